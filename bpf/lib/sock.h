/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The socket hooks' logic, at the socket layer (before any packet exists):
 *   - a host process's connect()/sendmsg() to a published (address, port) goes to the
 *     container (the host's own network namespace only);
 *   - a container's connect()/sendmsg() to its resolver's 127.0.0.11:53 goes to the port the
 *     agent's resolver listens on in that namespace (fn_resolvers, ebpf projects only).
 * Both record the address asked for (fn_sock_orig for a connect(), fn_sock_dsts for each
 * destination of a sendmsg()) so that replies and getpeername() show it. IPv6 sockets using
 * IPv4-mapped addresses are served like IPv4 ones.
 * And a host process's bind() to a published (address, port) fails with EADDRINUSE, as under
 * Docker, which holds each published port with a bound socket (the host's own network
 * namespace only).
 * The maps are reached through the accessors of fastnet.c (lib/map_access.h).
 */
#ifndef FN_LIB_SOCK_H
#define FN_LIB_SOCK_H

#include "common.h"
#include <uapi/asm-generic/errno.h>

#include "metrics.h"
#include "service.h"
#include "map_access.h"

/* cgroup/sock_addr programs return 1 (allow) or 0 (the system call fails: EPERM, or the
 * error the program gave bpf_set_retval()). */
#define FN_SOCK_ALLOW  1
#define FN_SOCK_REFUSE 0

#define FN_DNS_PORT 53

/* bcc 0.26 declares bpf_get_socket_cookie() returning 32 bits: call the helper by its id. */
static __u64 (*fn_bpf_get_socket_cookie)(void *ctx) = (void *)BPF_FUNC_get_socket_cookie;

/* The IPv4 address a socket address names: user_ip4, or, for an IPv6 socket's address, a.b.c.d
 * of ::ffff:a.b.c.d. `v6` is a constant of each hook: only its own context fields are read. 0
 * when the address is no IPv4 one (then fastnet, which publishes IPv4 only, leaves it alone). */
FN_INLINE int fn_sock_ipv4(struct bpf_sock_addr *ctx, int v6, __be32 *addr)
{
	if (!v6) {
		*addr = ctx->user_ip4;
		return 1;
	}
	if (ctx->user_ip6[0] || ctx->user_ip6[1] || ctx->user_ip6[2] != bpf_htonl(0x0000ffff))
		return 0;
	*addr = ctx->user_ip6[3];
	return 1;
}

FN_INLINE void fn_sock_set_ipv4(struct bpf_sock_addr *ctx, int v6, __be32 addr)
{
	if (v6)
		ctx->user_ip6[3] = addr; /* stays ::ffff:addr */
	else
		ctx->user_ip4 = addr;
}

/* Send the socket to (addr, port) and remember what it asked for (orig_addr and the context's
 * port): a connect() in the socket's own storage (its one peer), a sendmsg() in fn_sock_dsts
 * under (socket, where it went), so that a socket sending to several published ports sees each
 * one's replies come from the address it sent to. */
FN_INLINE void fn_sock_redirect(struct bpf_sock_addr *ctx, int v6, int connect, __be32 orig_addr, __be32 addr,
				__be16 port)
{
	struct fn_sock_orig *orig = fn_sock_orig_get(ctx->sk, 1);
	__be16 orig_port = (__be16)ctx->user_port;

	if (orig && connect) {
		orig->orig_ipv4 = orig_addr;
		orig->orig_port = orig_port;
		orig->backend_ipv4 = addr;
		orig->backend_port = port;
		orig->flags |= FN_SOCK_F_CONNECTED;
	} else if (orig) {
		struct fn_sock_dst_key k = { .cookie = fn_bpf_get_socket_cookie(ctx), .backend_ipv4 = addr,
					     .backend_port = port };
		struct fn_sock_dst d = { .orig_ipv4 = orig_addr, .orig_port = orig_port };

		fn_sock_dst_set(&k, &d);
		orig->flags |= FN_SOCK_F_SENT;
	}
	fn_sock_set_ipv4(ctx, v6, addr);
	ctx->user_port = port;
}

/* A container's query to addr:53 -> the resolver's socket of the same protocol. */
FN_INLINE int fn_sock_to_resolver(struct bpf_sock_addr *ctx, __u32 proto, __u64 netns_cookie, int v6, int connect,
				  __be32 daddr)
{
	struct fn_resolver *r;
	__be16 port;

	if ((__be16)ctx->user_port != bpf_htons(FN_DNS_PORT)) /* before the lookup: most sockets */
		return FN_SOCK_ALLOW;
	r = fn_resolver_of(netns_cookie);
	if (!r || daddr != r->addr)
		return FN_SOCK_ALLOW;
	port = proto == IPPROTO_TCP ? r->tcp_port : r->udp_port;
	/* The resolver's own socket (bound to addr:port) answering a client that itself sends
	 * from addr:53 (a DNS server in the container) must reach that client, not loop back. */
	if (!port || (ctx->sk->src_ip4 == r->addr && ctx->sk->src_port == bpf_ntohs(port)))
		return FN_SOCK_ALLOW;
	fn_sock_redirect(ctx, v6, connect, daddr, r->addr, port);
	fn_count_bytes(FN_PROG_SOCK, FN_FWD_SOCK_RESOLVER, 0); /* a query or connection, not a packet */
	return FN_SOCK_ALLOW;
}

/* connect() (connect 1) or sendmsg() (0) of an IPv4 (v6 0) or IPv6 socket. */
FN_INLINE int fn_sock_to_backend(struct bpf_sock_addr *ctx, __u32 proto, int v6, int connect)
{
	struct fn_host_config *cfg = fn_host_config_get();
	__u64 netns_cookie = bpf_get_netns_cookie(ctx);
	__be16 dport = (__be16)ctx->user_port;
	struct fn_service *svc;
	__be32 daddr;

	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || !fn_sock_ipv4(ctx, v6, &daddr))
		return FN_SOCK_ALLOW;
	if (!cfg || !cfg->netns_cookie || netns_cookie != cfg->netns_cookie)
		return fn_sock_to_resolver(ctx, proto, netns_cookie, v6, connect, daddr);
	svc = fn_service_find(proto, daddr, dport);
	if (!svc)
		return FN_SOCK_ALLOW;
	fn_sock_redirect(ctx, v6, connect, daddr, svc->backend_ipv4, fn_service_backend_port(svc, dport));
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

/* Replies (`sent` 1: a connected socket's, then each sendmsg() destination's) and getpeername()
 * (`sent` 0: the connected peer only) show the address asked for, not the one connected or sent
 * to. Any namespace: fn_sock_orig exists only on sockets the hooks above redirected. */
FN_INLINE int fn_sock_from_backend(struct bpf_sock_addr *ctx, int v6, int sent)
{
	struct fn_sock_orig *orig = fn_sock_orig_get(ctx->sk, 0);
	__be16 port = (__be16)ctx->user_port;
	__be32 addr;

	if (!orig || !fn_sock_ipv4(ctx, v6, &addr))
		return FN_SOCK_ALLOW;
	if ((orig->flags & FN_SOCK_F_CONNECTED) && addr == orig->backend_ipv4 && port == orig->backend_port) {
		fn_sock_set_ipv4(ctx, v6, orig->orig_ipv4);
		ctx->user_port = orig->orig_port;
	} else if (sent && (orig->flags & FN_SOCK_F_SENT)) {
		struct fn_sock_dst_key k = { .cookie = fn_bpf_get_socket_cookie(ctx), .backend_ipv4 = addr,
					     .backend_port = port };
		struct fn_sock_dst *d = fn_sock_dst_get(&k);

		if (d) {
			fn_sock_set_ipv4(ctx, v6, d->orig_ipv4);
			ctx->user_port = d->orig_port;
		}
	}
	return FN_SOCK_ALLOW;
}

#endif
