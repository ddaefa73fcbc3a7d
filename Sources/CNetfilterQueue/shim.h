#ifndef SLUICE_CNFQ_SHIM_H
#define SLUICE_CNFQ_SHIM_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <time.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter/nfnetlink_queue.h>

/* struct mmsghdr and recvmmsg need _GNU_SOURCE, which the Swift Glibc module is built
   without: the same layout under our own name, and the system call directly. */
struct sluice_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

static inline int sluice_recvmmsg(int fd, struct sluice_mmsghdr *v, unsigned int n, int flags) {
    return (int)syscall(SYS_recvmmsg, fd, v, n, flags, (void *)0);
}

#define SLUICE_MSG_WAITFORONE 0x10000

/* Moves the calling thread into the network namespace open at fd (setns, CLONE_NEWNET). */
static inline int sluice_setns_net(int fd) { return (int)syscall(SYS_setns, fd, 0x40000000); }

/* Pins the calling thread to one CPU (sched_setaffinity on thread id 0 = the caller). */
static inline int sluice_pin_cpu(int cpu) {
    unsigned long mask[16] = {0};
    if (cpu < 0 || cpu >= 1024) return -1;
    mask[cpu / (8 * sizeof(unsigned long))] |= 1UL << (cpu % (8 * sizeof(unsigned long)));
    return (int)syscall(SYS_sched_setaffinity, 0, sizeof(mask), mask);
}

#include <linux/capability.h>
#include <sys/prctl.h>
static inline int sluice_capbset_drop(int cap) { return prctl(PR_CAPBSET_DROP, cap, 0, 0, 0); }
/* capset(2) for the calling process: effective = permitted = `keep` (low 32 capabilities),
   inheritable empty. */
static inline int sluice_set_caps(uint32_t effective, uint32_t permitted) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = {{0}};
    d[0].effective = effective;
    d[0].permitted = permitted;
    return (int)syscall(SYS_capset, &h, d);
}
#endif
