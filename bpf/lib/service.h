/* SPDX-License-Identifier: Apache-2.0 */
/* Published ports: (protocol, host address, port) -> backend. Needs fn_svc_* accessors. */
#ifndef FN_LIB_SERVICE_H
#define FN_LIB_SERVICE_H

#include "common.h"

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

FN_INLINE __be16 fn_service_backend_port(const struct fn_service *svc, __be16 dport)
{
	return bpf_htons(svc->backend_port_first + (bpf_ntohs(dport) - svc->host_port_first));
}

#endif
