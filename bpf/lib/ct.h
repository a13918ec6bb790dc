/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking over two LRU tables (see fn_ct_entry in abi.h):
 *   fn_ct_new  flows that have not seen a reply: small, so a flood of new flows (spoofed SYNs
 *              to a published port) churns only this table;
 *   fn_ct      confirmed flows, promoted on their first reply, never displaced by new ones.
 * Entries are created with BPF_NOEXIST so two CPUs racing on a flow's first packets agree
 * on one translation. Needs the fn_ct_* accessors of fastnet.c.
 */
#ifndef FN_LIB_CT_H
#define FN_LIB_CT_H

#include "common.h"
#include "helpers.h"
#include "l4.h"

FN_INLINE __u64 fn_ct_timeout(__u8 proto, __u8 state)
{
	struct fn_host_config *cfg = fn_host_config_get();
	__u64 s;

	if (!cfg)
		return FN_CT_TIMEOUT_ICMP * FN_NSEC_PER_SEC;
	if (proto == IPPROTO_TCP) {
		if (state == FN_CT_ESTABLISHED)
			s = cfg->timeout_tcp_established;
		else if (state == FN_CT_NEW)
			s = cfg->timeout_tcp_syn;
		else
			s = cfg->timeout_tcp_closing;
	} else if (proto == IPPROTO_UDP) {
		s = cfg->timeout_udp;
	} else {
		s = cfg->timeout_icmp;
	}
	return s * FN_NSEC_PER_SEC;
}

/* The key of the other direction's entry: the reverse of the translated tuple. */
FN_INLINE void fn_ct_partner_key(const struct fn_ct_entry *e, __u8 proto, struct fn_ct_key *k)
{
	k->saddr = e->to_daddr;
	k->daddr = e->to_saddr;
	k->sport = e->to_dport;
	k->dport = e->to_sport;
	k->proto = proto;
	k->pad[0] = k->pad[1] = k->pad[2] = 0;
}

FN_INLINE struct fn_ct_entry *fn_ct_find(const struct fn_ct_key *key, int *confirmed)
{
	struct fn_ct_entry *e = fn_ct_confirmed_get(key);

	*confirmed = e != NULL;
	if (e)
		return e;
	return fn_ct_new_get(key);
}

/*
 * Creates both entries of a new flow in fn_ct_new. The reply entry goes first: for SNAT its
 * key is what claims the chosen port. Returns 0, or -1 if either key is taken (the caller
 * retries with another port, or re-reads the entry another CPU just made).
 */
FN_INLINE int fn_ct_create(const struct fn_ct_key *fwd_key, struct fn_ct_entry *fwd,
			   const struct fn_ct_key *rev_key, struct fn_ct_entry *rev)
{
	__u64 now = fn_now();

	fwd->created = rev->created = now;
	fwd->expires = rev->expires = now + fn_ct_timeout(fwd_key->proto, FN_CT_NEW);
	fwd->state = rev->state = FN_CT_NEW;
	rev->flags |= FN_CT_F_REPLY;
	if (fn_ct_confirmed_get(rev_key))
		return -1;
	if (fn_ct_new_insert(rev_key, rev, BPF_NOEXIST))
		return -1;
	if (fn_ct_new_insert(fwd_key, fwd, BPF_NOEXIST)) {
		fn_ct_new_remove(rev_key);
		return -1;
	}
	return 0;
}

/*
 * The first reply confirms a flow: both entries move to fn_ct. Returns the entry for key in
 * fn_ct, or NULL if the move failed (the packet is still translated from the old copy).
 */
FN_INLINE struct fn_ct_entry *fn_ct_promote(const struct fn_ct_key *key, struct fn_ct_entry *e)
{
	struct fn_ct_key pkey = {};
	struct fn_ct_entry mine = *e, partner;
	struct fn_ct_entry *p;
	__u64 now = fn_now();

	fn_ct_partner_key(e, key->proto, &pkey);
	p = fn_ct_new_get(&pkey);
	if (!p)
		return NULL;
	partner = *p;
	mine.state = partner.state = FN_CT_ESTABLISHED;
	mine.expires = partner.expires = now + fn_ct_timeout(key->proto, FN_CT_ESTABLISHED);
	if (fn_ct_confirmed_insert(&pkey, &partner, BPF_ANY) || fn_ct_confirmed_insert(key, &mine, BPF_ANY))
		return NULL;
	fn_ct_new_remove(&pkey);
	fn_ct_new_remove(key);
	return fn_ct_confirmed_get(key);
}

/*
 * Whether this packet of an unconfirmed flow confirms it. UDP and ICMP: the first reply. TCP:
 * the client's ACK after the server's SYN-ACK, so that a flood of spoofed SYNs answered by a
 * published container never reaches the confirmed table (the SYN-ACK only marks the flow).
 */
FN_INLINE int fn_ct_confirms(const struct fn_l4 *l4, struct fn_ct_entry *e)
{
	struct fn_ct_key pkey = {};
	struct fn_ct_entry *p;

	if (l4->key.proto != IPPROTO_TCP)
		return e->flags & FN_CT_F_REPLY;
	if (e->flags & FN_CT_F_REPLY) {
		fn_ct_partner_key(e, IPPROTO_TCP, &pkey);
		p = fn_ct_new_get(&pkey);
		if (p && (l4->tcp_flags & (FN_TCP_SYN | FN_TCP_ACK)) == (FN_TCP_SYN | FN_TCP_ACK))
			p->flags |= FN_CT_F_SEEN_REPLY;
		return 0;
	}
	return (e->flags & FN_CT_F_SEEN_REPLY) && (l4->tcp_flags & (FN_TCP_SYN | FN_TCP_ACK)) == FN_TCP_ACK;
}

/* Follows the TCP state a packet implies and pushes the deadline out. */
FN_INLINE void fn_ct_refresh(const struct fn_ct_key *key, struct fn_ct_entry *e, const struct fn_l4 *l4,
			     int confirmed)
{
	__u64 now = fn_now();
	__u8 state = e->state;

	if (key->proto == IPPROTO_TCP) {
		if (l4->tcp_flags & FN_TCP_RST) {
			state = FN_CT_CLOSED;
		} else if (l4->tcp_flags & FN_TCP_FIN) {
			state = FN_CT_CLOSING;
		} else if ((l4->tcp_flags & (FN_TCP_SYN | FN_TCP_ACK)) == FN_TCP_SYN &&
			   (state == FN_CT_CLOSING || state == FN_CT_CLOSED)) {
			state = FN_CT_NEW; /* the tuple is reused for a new connection */
		} else if (confirmed && state == FN_CT_NEW && (e->flags & FN_CT_F_REPLY)) {
			state = FN_CT_ESTABLISHED; /* the reused tuple's first reply */
		}
	}
	if (state != e->state) {
		struct fn_ct_key pkey = {};
		struct fn_ct_entry *p;

		e->state = state;
		e->expires = now + fn_ct_timeout(key->proto, state);
		/* The two directions move together, except at a first FIN: after a half-close
		 * the other direction may still send, and keeps its longer timeout. */
		fn_ct_partner_key(e, key->proto, &pkey);
		p = confirmed ? fn_ct_confirmed_get(&pkey) : fn_ct_new_get(&pkey);
		if (p && (state != FN_CT_CLOSING || p->state == FN_CT_CLOSING)) {
			p->state = state;
			p->expires = e->expires;
		}
		return;
	}
	if (state == FN_CT_ESTABLISHED || key->proto != IPPROTO_TCP) {
		__u64 deadline = now + fn_ct_timeout(key->proto, confirmed ? FN_CT_ESTABLISHED : FN_CT_NEW);

		if (deadline > e->expires + FN_CT_REFRESH_INTERVAL * FN_NSEC_PER_SEC) {
			/* traffic in either direction keeps the whole flow (and its port) alive */
			struct fn_ct_key pkey = {};
			struct fn_ct_entry *p;

			e->expires = deadline;
			fn_ct_partner_key(e, key->proto, &pkey);
			p = confirmed ? fn_ct_confirmed_get(&pkey) : fn_ct_new_get(&pkey);
			if (p && p->expires < deadline)
				p->expires = deadline;
		}
	}
}

#endif
