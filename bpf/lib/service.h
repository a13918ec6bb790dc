/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Published ports: (protocol, host address, port) -> backend. Needs the fn_svc_* accessors
 * and fn_pub_ports_word() of fastnet.c.
 */
#ifndef FN_LIB_SERVICE_H
#define FN_LIB_SERVICE_H

#include "common.h"
#include "map_access.h"

/* Is (proto, port) published on any address at all? One array lookup (fn_pub_ports), so a
 * hot path can leave before the tries below; `port` in host order. */
FN_INLINE int fn_port_published(__u8 proto, __u16 port)
{
	__u32 slot;
	__u64 *word;

	if (proto == IPPROTO_TCP)
		slot = FN_PORT_SLOT_TCP;
	else if (proto == IPPROTO_UDP)
		slot = FN_PORT_SLOT_UDP;
	else
		return 0;
	word = fn_pub_ports_word(slot * FN_PORT_WORDS + port / 64);
	return word && ((*word >> (port % 64)) & 1);
}

/* A port published on this very address wins over one published on every address. */
FN_INLINE struct fn_service *fn_service_find(__u8 proto, __be32 daddr, __be16 dport)
{
	struct fn_svc_addr_key ka = { .prefixlen = 56, .proto = proto };
	struct fn_svc_any_key kw = { .prefixlen = 24, .proto = proto };
	struct fn_service *svc;

	__builtin_memcpy(ka.addr, &daddr, 4);
	__builtin_memcpy(ka.port, &dport, 2);
	svc = fn_svc_addr_get(&ka);
	if (svc)
		return svc;
	if (!fn_host_addr_get(daddr))
		return NULL;
	__builtin_memcpy(kw.port, &dport, 2);
	return fn_svc_any_get(&kw);
}

/* Is (proto, daddr, dport) published on that very address or on every address? Unlike
 * fn_service_find, "every address" covers any daddr, held by the host or not: a socket bound
 * to the wildcard address (what Docker holds) conflicts with a bind to any address. */
FN_INLINE int fn_service_covers(__u8 proto, __be32 daddr, __be16 dport)
{
	struct fn_svc_addr_key ka = { .prefixlen = 56, .proto = proto };
	struct fn_svc_any_key kw = { .prefixlen = 24, .proto = proto };

	__builtin_memcpy(ka.addr, &daddr, 4);
	__builtin_memcpy(ka.port, &dport, 2);
	if (fn_svc_addr_get(&ka))
		return 1;
	__builtin_memcpy(kw.port, &dport, 2);
	return fn_svc_any_get(&kw) != NULL;
}

FN_INLINE __be16 fn_service_backend_port(const struct fn_service *svc, __be16 dport)
{
	return bpf_htons(svc->backend_port_first + (bpf_ntohs(dport) - svc->host_port_first));
}

#endif
