/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The socket hooks' logic, at the socket layer (before any packet exists):
 *   - a host process's connect()/sendmsg() to a published (address, port) goes to the
 *     container (the host's own network namespace only);
 *   - a container's connect()/sendmsg() to its resolver's 127.0.0.11:53 goes to the port the
 *     agent's resolver listens on in that namespace (fn_resolvers, ebpf projects only).
 * Both record the address asked for in fn_sock_orig so replies and getpeername() show it.
 * And a host process's bind() to a published (address, port) fails with EADDRINUSE, as under
 * Docker, which holds each published port with a bound socket (the host's own network
 * namespace only).
 * Needs fn_host_config_get(), fn_sock_orig_get(), fn_resolver_of() and the service accessors
 * of fastnet.c.
 */
#ifndef FN_LIB_SOCK_H
#define FN_LIB_SOCK_H

#include "common.h"
#include <uapi/asm-generic/errno.h>

#include "metrics.h"
#include "service.h"

/* cgroup/sock_addr programs return 1 (allow) or 0 (the system call fails: EPERM, or the
 * error the program gave bpf_set_retval()). */
#define FN_SOCK_ALLOW  1
#define FN_SOCK_REFUSE 0

#define FN_DNS_PORT 53

/* Send the socket to (addr, port) and remember what it asked for. */
FN_INLINE void fn_sock_redirect(struct bpf_sock_addr *ctx, __be32 addr, __be16 port)
{
	struct fn_sock_orig *orig = fn_sock_orig_get(ctx->sk, 1);

	if (orig) {
		orig->orig_ipv4 = ctx->user_ip4;
		orig->orig_port = (__be16)ctx->user_port;
		orig->backend_ipv4 = addr;
		orig->backend_port = port;
	}
	ctx->user_ip4 = addr;
	ctx->user_port = port;
}

/* A container's query to addr:53 -> the resolver's socket of the same protocol. */
FN_INLINE int fn_sock_to_resolver(struct bpf_sock_addr *ctx, __u32 proto, __u64 netns_cookie)
{
	struct fn_resolver *r;
	__be16 port;

	if ((__be16)ctx->user_port != bpf_htons(FN_DNS_PORT)) /* before the lookup: most sockets */
		return FN_SOCK_ALLOW;
	r = fn_resolver_of(netns_cookie);
	if (!r || ctx->user_ip4 != r->addr)
		return FN_SOCK_ALLOW;
	port = proto == IPPROTO_TCP ? r->tcp_port : r->udp_port;
	/* The resolver's own socket (bound to addr:port) answering a client that itself sends
	 * from addr:53 (a DNS server in the container) must reach that client, not loop back. */
	if (!port || (ctx->sk->src_ip4 == r->addr && ctx->sk->src_port == bpf_ntohs(port)))
		return FN_SOCK_ALLOW;
	fn_sock_redirect(ctx, r->addr, port);
	fn_count_bytes(FN_PROG_SOCK, FN_FWD_SOCK_RESOLVER, 0); /* a query or connection, not a packet */
	return FN_SOCK_ALLOW;
}

FN_INLINE int fn_sock_to_backend(struct bpf_sock_addr *ctx, __u32 proto)
{
	struct fn_host_config *cfg = fn_host_config_get();
	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	__be32 daddr = ctx->user_ip4;
	__be16 dport = (__be16)ctx->user_port;
	struct fn_service *svc;

	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return FN_SOCK_ALLOW;
	if (!cfg || !cfg->netns_cookie || netns_cookie != cfg->netns_cookie)
		return fn_sock_to_resolver(ctx, proto, netns_cookie);
	svc = fn_service_find(proto, daddr, dport);
	if (!svc)
		return FN_SOCK_ALLOW;
	fn_sock_redirect(ctx, svc->backend_ipv4, fn_service_backend_port(svc, dport));
	fn_count_bytes(FN_PROG_SOCK, FN_FWD_SOCK_DNAT, 0); /* a connection, not a packet */
	return FN_SOCK_ALLOW;
}

/*
 * A bind() to (addr, the context's port) by a socket of the host's network namespace:
 * -FN_DROP_BIND_PUBLISHED when a project publishes that port on every address, or on addr,
 * or addr is the wildcard (which overlaps every published address); else 0. As with Docker's
 * sockets, a bind to another specific address stays allowed when the port is published only
 * on one address. Every bind() of the machine comes here, so the bitmap goes first: most
 * binds are of port 0 or an unpublished port and leave after one array lookup.
 */
FN_INLINE int fn_sock_bind_check(struct bpf_sock_addr *ctx, __be32 addr, int wildcard)
{
	__be16 port = (__be16)ctx->user_port;
	__u32 proto = ctx->protocol;
	struct fn_host_config *cfg;

	if (!fn_port_published(proto, bpf_ntohs(port)))
		return 0;
	cfg = fn_host_config_get();
	if (!cfg || !cfg->netns_cookie || bpf_get_netns_cookie(ctx) != cfg->netns_cookie)
		return 0;
	if (wildcard || fn_service_covers(proto, addr, port))
		return -FN_DROP_BIND_PUBLISHED;
	return 0;
}

/* IPv6 binds that reach IPv4: the wildcard "::" (dual-stack unless IPV6_V6ONLY, which the
 * program cannot read: refused either way, as Docker's own [::] socket would refuse it) and
 * IPv4-mapped ::ffff:a.b.c.d (as a.b.c.d). Other IPv6 addresses are left alone: fastnet
 * publishes IPv4 only. */
FN_INLINE int fn_sock_bind6_check(struct bpf_sock_addr *ctx)
{
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1], w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];

	if (w0 || w1)
		return 0;
	if (!w2 && !w3)
		return fn_sock_bind_check(ctx, 0, 1);
	if (w2 != bpf_htonl(0x0000ffff))
		return 0;
	return fn_sock_bind_check(ctx, w3, w3 == 0);
}

/* The one place a refused bind() is counted. bpf_set_retval (helper 187, kernel 5.18; bcc
 * 0.26 declares it) makes the caller see EADDRINUSE, as for a port in use, where returning 0
 * alone would read EPERM. */
FN_INLINE int fn_sock_refuse(__u32 reason)
{
	fn_count_bytes(FN_PROG_SOCK, reason, 0); /* a system call, not a packet */
	bpf_set_retval(-EADDRINUSE);
	return FN_SOCK_REFUSE;
}

/* Replies and getpeername() show the address asked for, not the one connected to. Any
 * namespace: fn_sock_orig exists only on sockets the hooks above redirected. */
FN_INLINE int fn_sock_from_backend(struct bpf_sock_addr *ctx)
{
	struct fn_sock_orig *orig = fn_sock_orig_get(ctx->sk, 0);

	if (orig && ctx->user_ip4 == orig->backend_ipv4 && (__be16)ctx->user_port == orig->backend_port) {
		ctx->user_ip4 = orig->orig_ipv4;
		ctx->user_port = orig->orig_port;
	}
	return FN_SOCK_ALLOW;
}

#endif
