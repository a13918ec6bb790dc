/* SPDX-License-Identifier: Apache-2.0 */
/* Ethernet addresses. */
#ifndef FN_LIB_ETH_H
#define FN_LIB_ETH_H

#include "common.h"

/* Compares as three 16-bit loads: MACs in packets are only 2-aligned (an Ethernet header
 * starts at NET_IP_ALIGN = 2, so h_dest is never 4-aligned), and a 4-byte load from one is
 * refused on strict-alignment architectures (tests/bpf/test_alignment.py). */
FN_INLINE int fn_mac_equal(const __u8 *a, const __u8 *b)
{
	return *(const __u16 *)a == *(const __u16 *)b &&
	       *(const __u16 *)(a + 2) == *(const __u16 *)(b + 2) &&
	       *(const __u16 *)(a + 4) == *(const __u16 *)(b + 4);
}

/* Two-byte stores: stack slots must be accessed aligned, and MACs are only 2-aligned. */
FN_INLINE void fn_mac_copy(__u8 *dst, const __u8 *src)
{
	*(__u16 *)dst = *(const __u16 *)src;
	*(__u16 *)(dst + 2) = *(const __u16 *)(src + 2);
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

/* Group bit set: broadcast or multicast. */
FN_INLINE int fn_mac_is_group(const __u8 *mac)
{
	return mac[0] & 1;
}

#endif
