/* SPDX-License-Identifier: Apache-2.0 */
/* What every fastnet program includes first: UAPI headers and the house macros. */
#ifndef FN_LIB_COMMON_H
#define FN_LIB_COMMON_H

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/in.h>

#include "fastnet/abi.h"
#include "fastnet/counters.h"
#include "fastnet/programs.h"

#define FN_INLINE static __always_inline

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* bpf_fib_lookup flags newer than bcc 0.26's uapi copy (kernels 6.3 and 6.7). An older
 * kernel refuses the lookup (-EINVAL) and the callers fall back as without a FIB device. */
#define FN_FIB_LOOKUP_SKIP_NEIGH (1U << 2)
#define FN_FIB_LOOKUP_SRC        (1U << 4)
#define FN_MTU_CHK_SEGS          (1U << 0) /* bpf_check_mtu: GSO packets by their segments */

/* Byte swap usable in case labels (bcc's bpf_htons is not a constant expression). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define fn_htons_c(x) ((__be16)__builtin_bswap16(x))
#else
#define fn_htons_c(x) ((__be16)(x))
#endif

#define fn_likely(x)   __builtin_expect(!!(x), 1)
#define fn_unlikely(x) __builtin_expect(!!(x), 0)

#endif
