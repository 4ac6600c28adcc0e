/*
 * vmpool.h — warm pools of ready VMs (vmpool.c).
 */
#ifndef CAPSULE_VMPOOL_H
#define CAPSULE_VMPOOL_H

#include <stdint.h>

#include <jansson.h>

#include "caller.h"
#include "config.h"
#include "err.h"

#define VMPOOL_MAX_SIZE		16	/* VMs in one pool */
#define VMPOOL_MAX_PER_USER	4	/* pools of one uid */

struct vm;

/* SetPool: req holds "size" and StartVM's fields. *out: the pool as
 * ListPools shows it, or JSON null once removed (size 0). */
int	vmpool_set(const struct caller *who, json_t *req, json_t **out,
	    struct cap_err *err);
/* The `pool` lines of file (capsuled.conf), as SetPool from each line's
 * user; pools of earlier lines that are gone are removed. strict (at
 * start-up): every line is checked first and the first bad one is the
 * error, nothing applied. Otherwise the good lines apply, bad ones are
 * logged and the first is the error. A SetPool may change a configured
 * pool until the next load. */
int	vmpool_configure(const struct config_pool *cps, unsigned n,
	    const char *file, int strict, struct cap_err *err);
/* A ready VM from who's pool of exactly req's fields, now owned by the
 * connection `owner` (the pool refills); NULL if there is none. */
struct vm *vmpool_take(const struct caller *who, json_t *req,
	    uint64_t owner);
/* Every pool of uid (root: all). */
json_t	*vmpool_list_json(uid_t uid);
/* vm is going: if it was pooled, its pool replaces it. */
void	vmpool_vm_gone(struct vm *vm);
/* vm ended on its own (crashed, powered off): if it was pooled, it goes
 * and its pool replaces it. */
void	vmpool_vm_ended(struct vm *vm);
/* Forgets every pool (capsuled exits; its VMs go their own way). */
void	vmpool_clear(void);

#endif /* CAPSULE_VMPOOL_H */
