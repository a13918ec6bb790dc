/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Published ports for the host's own processes, at the socket layer: connect()/sendmsg() to
 * a published (address, port) are redirected to the container before any packet exists.
 * Needs fn_host_config_get(), fn_sock_orig_get() and the service accessors of fastnet.c.
 */
#ifndef FN_LIB_SOCK_H
#define FN_LIB_SOCK_H

#include "common.h"
#include "metrics.h"
#include "service.h"

/* cgroup/sock_addr programs must return 1 (allow); 0 would fail the system call. */
#define FN_SOCK_ALLOW 1

FN_INLINE int fn_sock_is_ours(struct bpf_sock_addr *ctx)
{
	struct fn_host_config *cfg = fn_host_config_get();

	return cfg && cfg->netns_cookie && bpf_get_netns_cookie(ctx) == cfg->netns_cookie;
}

FN_INLINE int fn_sock_to_backend(struct bpf_sock_addr *ctx, __u32 proto)
{
	__be32 daddr = ctx->user_ip4;
	__be16 dport = (__be16)ctx->user_port;
	struct fn_service *svc;
	struct fn_sock_orig *orig;
	__be16 bport;

	if ((proto != IPPROTO_TCP && proto != IPPROTO_UDP) || !fn_sock_is_ours(ctx))
		return FN_SOCK_ALLOW;
	svc = fn_service_find(proto, daddr, dport);
	if (!svc)
		return FN_SOCK_ALLOW;
	bport = fn_service_backend_port(svc, dport);
	orig = fn_sock_orig_get(ctx->sk, 1);
	if (orig) {
		orig->orig_ipv4 = daddr;
		orig->orig_port = dport;
		orig->backend_ipv4 = svc->backend_ipv4;
		orig->backend_port = bport;
	}
	ctx->user_ip4 = svc->backend_ipv4;
	ctx->user_port = bport;
	fn_count_bytes(FN_PROG_SOCK, FN_FWD_SOCK_DNAT, 0); /* a connection, not a packet */
	return FN_SOCK_ALLOW;
}

/* Replies and getpeername() show the published address, not the container's. */
FN_INLINE int fn_sock_from_backend(struct bpf_sock_addr *ctx)
{
	struct fn_sock_orig *orig;

	if (!fn_sock_is_ours(ctx))
		return FN_SOCK_ALLOW;
	orig = fn_sock_orig_get(ctx->sk, 0);
	if (orig && ctx->user_ip4 == orig->backend_ipv4 && (__be16)ctx->user_port == orig->backend_port) {
		ctx->user_ip4 = orig->orig_ipv4;
		ctx->user_port = orig->orig_port;
	}
	return FN_SOCK_ALLOW;
}

#endif
