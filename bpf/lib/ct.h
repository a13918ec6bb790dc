/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection tracking over one HASH table, fn_ct (see fn_ct_entry in abi.h), with budgets.
 *
 *   - Nothing is evicted: a flow lives until its deadline passes and the agent's garbage
 *     collection (fn_ct_admin) removes it, or until it is refused.
 *   - Both entries of a flow are created together (BPF_NOEXIST, so two CPUs racing on a
 *     flow's first packets agree on one translation), refreshed together and removed together.
 *   - Budgets (fn_host_config, counted in fn_ct_budget): flows from outside ("in") and the
 *     containers' own ("out") never compete; within each, new (unconfirmed) and confirmed
 *     flows have their own limits, and one published port or one container may hold only its
 *     share. A flow over a budget is refused and counted; nothing established is displaced.
 *   - A flow is confirmed by the first reply (UDP, ICMP) or by a valid TCP handshake: the
 *     server's SYN-ACK acknowledges the client's SYN, and the client's ACK acknowledges the
 *     SYN-ACK (so blind ACKs from outside confirm nothing).
 *
 * TCP follows RFC 5382 and Linux: an RST closes a flow only if its sequence number is in the
 * sender's window; one FIN half-closes it (both directions keep it alive, with the
 * half-closed timeout); a flow picked up mid-stream (no SYN seen) is confirmed once its other
 * direction answers.
 *
 * The accounting word of a flow is its forward entry's `status`, changed only atomically:
 * whoever confirms it moves it from the new to the confirmed budget, whoever marks it
 * FN_CT_S_REMOVING removes both entries and releases its budget.
 * Needs the fn_ct_* accessors of fastnet.c.
 */
#ifndef FN_LIB_CT_H
#define FN_LIB_CT_H

#include "common.h"
#include "helpers.h"
#include "l4.h"
#include "map_access.h"

#define FN_CT_TAKEN (-1)   /* fn_ct_create(): a key of the flow is in use (not a drop reason) */
#define FN_EEXIST   17

/* fn_ct_track(): an RST outside the window was delivered but changed nothing */
#define FN_CT_RST_IGNORED 1

/* A direction's `seq` is rewritten only when its sequence numbers moved past it by more than
 * FN_CT_SEQ_STEP (at most one write per 64 KiB sent), so the sender's next sequence number is
 * within [seq, seq + FN_CT_SEQ_STEP + one segment]. An RST is in the window when its sequence
 * number is within FN_CT_RST_WINDOW of that (Linux checks the receiver's advertised window,
 * which needs a write per packet): a blind RST must guess ~2 MiB of the 4 GiB space. */
#define FN_CT_SEQ_STEP   (1U << 16)
#define FN_CT_RST_WINDOW (1U << 20)

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
		else if (state == FN_CT_HALF_CLOSED)
			s = cfg->timeout_tcp_half_closed;
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
	struct fn_ct_entry *e = fn_ct_get(key);

	*confirmed = e && (e->status & FN_CT_S_CONFIRMED);
	return e;
}

/* ---- budgets ------------------------------------------------------------------------------ */

/* The owner a new flow is counted against: the published port it came in by, or the
 * container that opened it (SNAT, hairpin: the port its replies are delivered to). */
FN_INLINE __u32 fn_ct_owner(const struct fn_ct_key *fwd_key, const struct fn_ct_entry *fwd,
			    const struct fn_ct_entry *rev)
{
	if (fwd->flags & FN_CT_F_INBOUND)
		return FN_CT_OWNER_PORTS + (fwd_key->proto == IPPROTO_UDP ? FN_PORT_SLOT_UDP : FN_PORT_SLOT_TCP) * 65536 +
		       bpf_ntohs(fwd_key->dport);
	return FN_CT_OWNER_CONTAINERS + rev->out_ifindex % FN_CT_CONTAINER_SLOTS;
}

FN_INLINE int fn_ct_owner_inbound(__u32 owner)
{
	return owner < FN_CT_OWNER_CONTAINERS;
}

/* One more in *count unless it already holds limit: 0, or -1. */
FN_INLINE int fn_ct_take(__u64 *count, __u32 limit)
{
	if (__sync_fetch_and_add(count, 1) < limit)
		return 0;
	__sync_fetch_and_add(count, -1);
	return -1;
}

/* Counts a flow of `owner` in its new or confirmed budgets: 0, or -1 when either is full. */
FN_INLINE int fn_ct_claim(__u32 owner, int confirmed)
{
	struct fn_host_config *cfg = fn_host_config_get();
	int inbound = fn_ct_owner_inbound(owner);
	struct fn_ct_count *total = fn_ct_count_of(inbound ? FN_CT_OWNER_IN : FN_CT_OWNER_OUT);
	struct fn_ct_count *mine = fn_ct_count_of(owner);
	__u32 total_max, owner_max;

	if (!cfg || !total || !mine)
		return -1;
	if (inbound) {
		total_max = confirmed ? cfg->ct_in_max : cfg->ct_in_new_max;
		owner_max = confirmed ? cfg->ct_port_max : cfg->ct_port_new_max;
	} else {
		total_max = confirmed ? cfg->ct_out_max : cfg->ct_out_new_max;
		owner_max = confirmed ? cfg->ct_container_max : cfg->ct_container_new_max;
	}
	if (fn_ct_take(confirmed ? &total->flows : &total->new_flows, total_max))
		return -1;
	if (fn_ct_take(confirmed ? &mine->flows : &mine->new_flows, owner_max)) {
		__sync_fetch_and_add(confirmed ? &total->flows : &total->new_flows, -1);
		return -1;
	}
	return 0;
}

FN_INLINE void fn_ct_release(__u32 owner, int confirmed)
{
	struct fn_ct_count *total = fn_ct_count_of(fn_ct_owner_inbound(owner) ? FN_CT_OWNER_IN : FN_CT_OWNER_OUT);
	struct fn_ct_count *mine = fn_ct_count_of(owner);

	if (total)
		__sync_fetch_and_add(confirmed ? &total->flows : &total->new_flows, -1);
	if (mine)
		__sync_fetch_and_add(confirmed ? &mine->flows : &mine->new_flows, -1);
}

/* ---- creating and removing flows ---------------------------------------------------------- */

/*
 * Creates both entries of a new flow, counted in its budget of new flows. The reply entry
 * goes first: for SNAT its key is what claims the chosen port. Returns 0; FN_CT_TAKEN if a key
 * is in use (the caller retries with another port, or re-reads the entry another CPU just
 * made); -FN_DROP_CT_NEW_FULL when the budget is full; -FN_DROP_CT_INSERT if the table is.
 */
FN_INLINE int fn_ct_create(const struct fn_ct_key *fwd_key, struct fn_ct_entry *fwd,
			   const struct fn_ct_key *rev_key, struct fn_ct_entry *rev)
{
	__u64 now = fn_now();
	__u32 owner;
	int ret;

	if (fn_ct_get(rev_key))
		return FN_CT_TAKEN; /* before touching the budget: the port search tries many */
	if ((fwd->flags & (FN_CT_F_DNAT | FN_CT_F_HAIRPIN)) == FN_CT_F_DNAT) {
		fwd->flags |= FN_CT_F_INBOUND;
		rev->flags |= FN_CT_F_INBOUND;
	}
	owner = fn_ct_owner(fwd_key, fwd, rev);
	fwd->owner = rev->owner = owner;
	fwd->created = rev->created = now;
	fwd->expires = rev->expires = now + fn_ct_timeout(fwd_key->proto, FN_CT_NEW);
	fwd->state = rev->state = FN_CT_NEW;
	fwd->status = rev->status = 0;
	rev->flags |= FN_CT_F_REPLY;
	if (fn_ct_claim(owner, 0))
		return -FN_DROP_CT_NEW_FULL;
	ret = fn_ct_insert(rev_key, rev);
	if (!ret) {
		ret = fn_ct_insert(fwd_key, fwd);
		if (ret)
			fn_ct_delete(rev_key);
	}
	if (ret) {
		fn_ct_release(owner, 0);
		return ret == -FN_EEXIST ? FN_CT_TAKEN : -FN_DROP_CT_INSERT;
	}
	return 0;
}

/*
 * Removes a flow given either of its entries' keys, both entries at once, and releases its
 * budget. now != 0: only if both entries expired before it. Returns the entries removed.
 */
FN_INLINE int fn_ct_remove(const struct fn_ct_key *key, __u64 now)
{
	struct fn_ct_entry *e = fn_ct_get(key), *p, *fwd;
	struct fn_ct_key pkey = {};
	const struct fn_ct_key *fwd_key, *rev_key;
	__u64 status;
	__u32 owner;
	int n = 0;

	if (!e)
		return 0;
	fn_ct_partner_key(e, key->proto, &pkey);
	p = fn_ct_get(&pkey);
	if (now && (e->expires >= now || (p && p->expires >= now)))
		return 0;
	if (e->flags & FN_CT_F_REPLY) {
		fwd = p;
		fwd_key = &pkey;
		rev_key = key;
	} else {
		fwd = e;
		fwd_key = key;
		rev_key = &pkey;
	}
	if (!fwd) /* half a flow (its creation failed half-way): nothing counted */
		return !fn_ct_delete(key);
	status = __sync_fetch_and_or(&fwd->status, FN_CT_S_REMOVING);
	if (status & FN_CT_S_REMOVING)
		return 0; /* another remover has it */
	owner = fwd->owner;
	n += !fn_ct_delete(rev_key);
	n += !fn_ct_delete(fwd_key);
	fn_ct_release(owner, status & FN_CT_S_CONFIRMED);
	return n;
}

/*
 * Inserts a flow as it is (an older build's, carried over an upgrade), counted in the budget
 * its state says, if that has room and both keys are free. 1 if inserted, else 0.
 */
FN_INLINE int fn_ct_adopt(struct fn_ct_flow *f)
{
	int confirmed = f->fwd.status & FN_CT_S_CONFIRMED;
	__u32 owner;

	f->fwd.flags &= ~(FN_CT_F_REPLY | FN_CT_F_INBOUND);
	f->rev.flags = (f->rev.flags & ~FN_CT_F_INBOUND) | FN_CT_F_REPLY;
	if ((f->fwd.flags & (FN_CT_F_DNAT | FN_CT_F_HAIRPIN)) == FN_CT_F_DNAT) { /* as fn_ct_create decides */
		f->fwd.flags |= FN_CT_F_INBOUND;
		f->rev.flags |= FN_CT_F_INBOUND;
	}
	owner = fn_ct_owner(&f->fwd_key, &f->fwd, &f->rev);
	f->fwd.owner = f->rev.owner = owner;
	f->fwd.status = f->rev.status = confirmed ? FN_CT_S_CONFIRMED : 0;
	if (fn_ct_claim(owner, confirmed))
		return 0;
	if (fn_ct_insert(&f->rev_key, &f->rev)) {
		fn_ct_release(owner, confirmed);
		return 0;
	}
	if (fn_ct_insert(&f->fwd_key, &f->fwd)) {
		fn_ct_delete(&f->rev_key);
		fn_ct_release(owner, confirmed);
		return 0;
	}
	return 1;
}

/* ---- following a flow's packets ------------------------------------------------------------ */

/* Traffic in either direction keeps the whole flow (and its port) alive: both deadlines move,
 * at most every FN_CT_REFRESH_INTERVAL (fewer writes). */
FN_INLINE void fn_ct_refresh(const struct fn_ct_key *key, struct fn_ct_entry *e, __u64 now)
{
	__u64 deadline = now + fn_ct_timeout(key->proto, e->state);

	if (deadline > e->expires + FN_CT_REFRESH_INTERVAL * FN_NSEC_PER_SEC) {
		struct fn_ct_key pkey = {};
		struct fn_ct_entry *p;

		e->expires = deadline;
		fn_ct_partner_key(e, key->proto, &pkey);
		p = fn_ct_get(&pkey);
		if (p && p->expires < deadline)
			p->expires = deadline;
	}
}

/* Both entries to `state`, with its timeout from now. */
FN_INLINE void fn_ct_set_state(const struct fn_ct_key *key, struct fn_ct_entry *e, __u8 state, __u64 now)
{
	struct fn_ct_key pkey = {};
	struct fn_ct_entry *p;

	e->state = state;
	e->expires = now + fn_ct_timeout(key->proto, state);
	fn_ct_partner_key(e, key->proto, &pkey);
	p = fn_ct_get(&pkey);
	if (p) {
		p->state = state;
		p->expires = e->expires;
	}
}

/*
 * Confirms the flow of entry e (the packet that proves it real): it moves from the new to the
 * confirmed budget, both entries become established. 0, or -FN_DROP_CT_FULL when the confirmed
 * budget is full: the flow is refused (removed), and so is the packet.
 */
FN_INLINE int fn_ct_confirm(const struct fn_ct_key *key, struct fn_ct_entry *e, __u64 now)
{
	struct fn_ct_key pkey = {};
	struct fn_ct_entry *p, *fwd;
	__u64 status;

	fn_ct_partner_key(e, key->proto, &pkey);
	p = fn_ct_get(&pkey);
	fwd = (e->flags & FN_CT_F_REPLY) ? p : e;
	if (!p || !fwd)
		return 0; /* half a flow: left to garbage collection */
	if (!(fwd->status & FN_CT_S_CONFIRMED)) {
		__u32 owner = fwd->owner;

		if (fn_ct_claim(owner, 1)) {
			fn_ct_remove(key, 0);
			return -FN_DROP_CT_FULL;
		}
		status = __sync_val_compare_and_swap(&fwd->status, 0, FN_CT_S_CONFIRMED);
		if (status) {
			fn_ct_release(owner, 1); /* confirmed, or being removed, by another CPU */
			if (!(status & FN_CT_S_CONFIRMED))
				return 0;
		} else {
			fn_ct_release(owner, 0);
		}
		/* the reply entry's copy (what fn_ct_find says there); the forward entry's word
		 * is only ever changed atomically */
		(fwd == e ? p : e)->status |= FN_CT_S_CONFIRMED;
	}
	e->state = p->state = FN_CT_ESTABLISHED;
	e->expires = p->expires = now + fn_ct_timeout(key->proto, FN_CT_ESTABLISHED);
	return 0;
}

/* The highest sequence number a direction sent, written at most once per FN_CT_SEQ_STEP. */
FN_INLINE void fn_ct_tcp_seq(struct fn_ct_entry *e, __u32 seq)
{
	if (!(e->tcp & FN_CT_TCP_SEQ)) {
		e->seq = seq;
		e->tcp |= FN_CT_TCP_SEQ;
	} else if ((__s32)(seq - e->seq) > (__s32)FN_CT_SEQ_STEP) {
		e->seq = seq;
	}
}

/*
 * The handshake of a TCP flow (state new). The flow's first packet: a SYN tells what the
 * SYN-ACK must acknowledge; anything else means the flow was picked up mid-stream (after a
 * flush, say). A SYN-ACK that acknowledges the SYN tells what the client's ACK must
 * acknowledge, and that ACK confirms; a picked-up flow is confirmed by any packet of its
 * other direction (an RST does not get here).
 */
FN_INLINE int fn_ct_tcp_handshake(const struct fn_l4 *l4, struct fn_ct_entry *e, __u64 now)
{
	__u8 flags = l4->tcp_flags & (FN_TCP_SYN | FN_TCP_ACK);
	__u32 seq = bpf_ntohl(l4->tcp_seq), ack = bpf_ntohl(l4->tcp_ack);
	struct fn_ct_key pkey = {};
	struct fn_ct_entry *p;

	if (e->flags & FN_CT_F_REPLY) {
		if (e->tcp & FN_CT_TCP_PICKUP) {
			fn_ct_tcp_seq(e, seq);
			return fn_ct_confirm(&l4->key, e, now);
		}
		if (flags != (FN_TCP_SYN | FN_TCP_ACK) || !(e->tcp & FN_CT_TCP_ACK_EXPECT) || ack != e->ack_expect)
			return 0;
		e->seq = seq;
		e->tcp |= FN_CT_TCP_SEQ;
		fn_ct_partner_key(e, IPPROTO_TCP, &pkey);
		p = fn_ct_get(&pkey);
		if (p) {
			p->ack_expect = seq + 1;
			p->tcp |= FN_CT_TCP_ACK_EXPECT;
		}
		return 0;
	}
	if (!(e->tcp & FN_CT_TCP_SEQ)) { /* the flow's first packet */
		e->seq = seq;
		fn_ct_partner_key(e, IPPROTO_TCP, &pkey);
		p = fn_ct_get(&pkey);
		if (flags == FN_TCP_SYN) {
			e->tcp = FN_CT_TCP_SEQ;
			if (p) {
				p->ack_expect = seq + 1;
				p->tcp = FN_CT_TCP_ACK_EXPECT;
			}
		} else {
			e->tcp = FN_CT_TCP_SEQ | FN_CT_TCP_PICKUP;
			if (p)
				p->tcp = FN_CT_TCP_PICKUP;
		}
		return 0;
	}
	fn_ct_tcp_seq(e, seq);
	if (flags == FN_TCP_ACK && (e->tcp & FN_CT_TCP_ACK_EXPECT) && ack == e->ack_expect)
		return fn_ct_confirm(&l4->key, e, now);
	return 0;
}

/*
 * An RST closes the flow (both entries; the closing timeout, as Linux keeps CLOSE) only if it
 * is in the sender's window: near the highest sequence number that direction sent or, from a
 * direction that sent nothing yet (refusing a SYN), acknowledging the SYN. A direction we know
 * nothing of (a picked-up or carried-over flow) cannot be checked: its RST is taken.
 * FN_CT_RST_IGNORED when it is not: the endpoint gets it all the same (it checks it too).
 */
FN_INLINE int fn_ct_tcp_rst(const struct fn_l4 *l4, struct fn_ct_entry *e, __u64 now)
{
	__u32 seq = bpf_ntohl(l4->tcp_seq), ack = bpf_ntohl(l4->tcp_ack);

	if (e->state == FN_CT_CLOSED)
		return 0;
	if (e->tcp & FN_CT_TCP_SEQ) {
		if (seq - e->seq + FN_CT_RST_WINDOW > 2 * FN_CT_RST_WINDOW + FN_CT_SEQ_STEP)
			return FN_CT_RST_IGNORED;
	} else if (e->tcp & FN_CT_TCP_ACK_EXPECT) {
		if (!(l4->tcp_flags & FN_TCP_ACK) || ack != e->ack_expect)
			return FN_CT_RST_IGNORED;
	}
	fn_ct_set_state(&l4->key, e, FN_CT_CLOSED, now);
	return 0;
}

/* A FIN: the flow is half-closed (the other direction may go on sending: both keep the flow
 * alive, with the half-closed timeout), or closing once both directions sent one. */
FN_INLINE void fn_ct_tcp_fin(const struct fn_l4 *l4, struct fn_ct_entry *e, __u64 now)
{
	struct fn_ct_key pkey = {};
	struct fn_ct_entry *p;
	__u8 state;

	e->tcp |= FN_CT_TCP_FIN;
	fn_ct_partner_key(e, IPPROTO_TCP, &pkey);
	p = fn_ct_get(&pkey);
	state = p && (p->tcp & FN_CT_TCP_FIN) ? FN_CT_CLOSING : FN_CT_HALF_CLOSED;
	if (state == e->state) {
		fn_ct_refresh(&l4->key, e, now); /* a retransmitted FIN */
		return;
	}
	e->state = state;
	e->expires = now + fn_ct_timeout(IPPROTO_TCP, state);
	if (p) {
		p->state = state;
		p->expires = e->expires;
	}
}

/*
 * Follows the flow a packet belongs to: confirmation, TCP state, deadlines. 0,
 * FN_CT_RST_IGNORED, or a negative drop reason (the flow and the packet are refused).
 */
FN_INLINE int fn_ct_track(const struct fn_l4 *l4, struct fn_ct_entry *e)
{
	const struct fn_ct_key *key = &l4->key;
	__u64 now = fn_now();
	__u8 flags = l4->tcp_flags;

	if (key->proto != IPPROTO_TCP) {
		if (!(e->status & FN_CT_S_CONFIRMED) && (e->flags & FN_CT_F_REPLY))
			return fn_ct_confirm(key, e, now); /* the first reply */
		fn_ct_refresh(key, e, now);
		return 0;
	}
	if (flags & FN_TCP_RST)
		return fn_ct_tcp_rst(l4, e, now);
	switch (e->state) {
	case FN_CT_ESTABLISHED:
	case FN_CT_HALF_CLOSED:
		fn_ct_tcp_seq(e, bpf_ntohl(l4->tcp_seq));
		if (flags & FN_TCP_FIN)
			fn_ct_tcp_fin(l4, e, now);
		else
			fn_ct_refresh(key, e, now);
		return 0;
	case FN_CT_NEW:
		return fn_ct_tcp_handshake(l4, e, now);
	default: /* closing, closed: no refresh; the client's new SYN reuses the tuple */
		if ((flags & (FN_TCP_SYN | FN_TCP_ACK)) == FN_TCP_SYN && !(e->flags & FN_CT_F_REPLY)) {
			fn_ct_set_state(key, e, FN_CT_NEW, now);
			e->tcp = 0;
			return fn_ct_tcp_handshake(l4, e, now);
		}
		fn_ct_tcp_seq(e, bpf_ntohl(l4->tcp_seq));
		return 0;
	}
}

#endif
