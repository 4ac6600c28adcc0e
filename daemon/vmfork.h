/*
 * vmfork.h — ForkVM: copies of a running VM (vmfork.c).
 */
#ifndef CAPSULE_VMFORK_H
#define CAPSULE_VMFORK_H

#include <stdint.h>

#include <jansson.h>

#include "caller.h"
#include "err.h"

#define VMFORK_MAX		16	/* copies in one ForkVM */

struct vm;

/* The outcome: vms (a JSON array of what StartVM says of each copy, the
 * callee's to keep) or err. */
typedef void (*vmfork_cb)(json_t *vms, const struct cap_err *err,
    void *arg);

/* Starts `count` copies of vm for who, owned by the connection `owner`;
 * cb reports once every copy is ready, or once one failed (the others are
 * stopped then). 0: cb will be called; else err says why not. */
int	vmfork_start(struct vm *vm, const struct caller *who, uint64_t owner,
	    unsigned count, int stop_on_disconnect, vmfork_cb cb, void *arg,
	    struct cap_err *err);

#endif /* CAPSULE_VMFORK_H */
