/* SPDX-License-Identifier: Apache-2.0 */
/*
 * IP fragments. Only a datagram's first fragment carries the transport header, so only it
 * can be matched to a flow; translating it records its ports in fn_frags under what the other
 * fragments share (source, destination, protocol, IP ID, as they arrive), and each later
 * fragment takes them from there and is translated by the same flow: addresses and the IP
 * checksum (the transport checksum, in the first fragment, covers the whole datagram). A
 * later fragment that arrives before its first one has no ports: the callers hand it to the
 * host when it is addressed there, else drop it (drop_fragment), as Cilium does.
 * fn_frag_get() and fn_frag_put() are fastnet.c's accessors (lib/map_access.h).
 */
#ifndef FN_LIB_FRAG_H
#define FN_LIB_FRAG_H

#include "common.h"
#include "l4.h"
#include "map_access.h"

FN_INLINE void fn_frag_key_of(const struct fn_l4 *l4, struct fn_frag_key *k)
{
	k->saddr = l4->key.saddr;
	k->daddr = l4->key.daddr;
	k->id = l4->ip_id;
	k->proto = l4->key.proto;
	k->pad = 0;
}

/* A later fragment's ports, from its datagram's first fragment. 0, or -FN_DROP_FRAGMENT. */
FN_INLINE int fn_frag_ports(struct fn_l4 *l4)
{
	struct fn_frag_key k;
	struct fn_frag_ports *p;

	fn_frag_key_of(l4, &k);
	p = fn_frag_get(&k);
	if (!p)
		return -FN_DROP_FRAGMENT;
	l4->key.sport = p->sport;
	l4->key.dport = p->dport;
	return 0;
}

/* A first fragment was translated: its datagram's other fragments will be too. */
FN_INLINE void fn_frag_record(const struct fn_l4 *l4)
{
	struct fn_frag_key k;
	struct fn_frag_ports p = { .sport = l4->key.sport, .dport = l4->key.dport };

	fn_frag_key_of(l4, &k);
	fn_frag_put(&k, &p);
}

#endif
