#ifndef SLUICE_CNFQ_SHIM_H
#define SLUICE_CNFQ_SHIM_H
#include <stdint.h>
#include <sys/types.h>
#include <netinet/in.h>
#include <linux/netfilter.h>
#include <libmnl/libmnl.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter/nfnetlink_queue.h>
#endif
