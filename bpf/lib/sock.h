/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The socket hooks' logic, at the socket layer (before any packet exists):
 *   - a host process's connect()/sendmsg() to a published (address, port) goes to the
 *     container (the host's own network namespace only);
 *   - a container's connect()/sendmsg() to its resolver's 127.0.0.11:53 goes to the port the
 *     agent's resolver listens on in that namespace (fn_resolvers, ebpf projects only).
 * Both record the address asked for in fn_sock_orig so replies and getpeername() show it.
 * Needs fn_host_config_get(), fn_sock_orig_get(), fn_resolver_of() and the service accessors
 * of fastnet.c.
 */
#ifndef FN_LIB_SOCK_H
#define FN_LIB_SOCK_H

#include "common.h"
#include "metrics.h"
#include "service.h"

/* cgroup/sock_addr programs must return 1 (allow); 0 would fail the system call. */
#define FN_SOCK_ALLOW 1

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
