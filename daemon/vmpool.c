/*
 * vmpool.c — warm pools: VMs of one StartVM request, started ahead of time
 * for one user and handed out by a matching StartVM at once.
 *
 * SetPool {size, StartVM's fields} keeps `size` VMs of that request
 * started and ready, as the caller (they count toward the caller's limits
 * and show in ListVMs with "pooled": true). A StartVM from the same uid
 * whose fields are exactly the pool's (same JSON, key order aside) takes
 * a ready one: it is the caller's from then on, as if just started, and
 * the pool starts another. A VM is handed out once and never goes back.
 * Size 0 removes the pool and stops the VMs still in it.
 *
 * Pools live in the daemon's memory: a pooled VM's record says so, and a
 * later capsuled stops it instead of taking it over. A pool whose start
 * fails stops refilling until the next SetPool (or, for a pool of
 * capsuled.conf, reload), and says why. `pool` lines in capsuled.conf make
 * pools at start-up and on SIGHUP (vmpool_configure).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"
#include "util.h"
#include "vmpool.h"
#include "vmpriv.h"

struct vmpool {
	TAILQ_ENTRY(vmpool) entry;
	uint64_t	 id;
	struct caller	 who;
	char		*fields;	/* canonical JSON of the request */
	json_t		*req;		/* the StartVM request */
	unsigned	 size;
	unsigned	 starting;
	uint64_t	 handed_out;
	unsigned	 config_line;	/* its `pool` line; 0: SetPool's */
	unsigned	 config_gen;	/* the last load that named it */
	char		 error[sizeof(((struct cap_err *)0)->msg)];
					/* why refilling stopped; "" */
};

static TAILQ_HEAD(, vmpool) pools = TAILQ_HEAD_INITIALIZER(pools);
static uint64_t next_id = 1;
static unsigned config_gen;

static void	vmpool_fill(struct vmpool *p);
static struct vmpool *vmpool_by_id(uint64_t id);

_Static_assert(CONFIG_POOL_MAX_SIZE == VMPOOL_MAX_SIZE,
    "capsuled.conf's pool sizes are SetPool's");

/* Still the pool's, and not on its way out. */
static int
vmpool_holds(const struct vm *vm, uint64_t id)
{
	return vm->pool == id && vm->spec.pooled &&
	    (vm->state == VM_RUNNING || vm->state == VM_UNRESPONSIVE ||
	    vm->state == VM_PAUSED);
}

/* Tidying and refilling happen on their own turn of the loop, never
 * inside a caller that walks the VM list (StopVM of all, say). */
static void
vmpool_tidy(evutil_socket_t fd, short what, void *arg)
{
	struct vmpool *p = vmpool_by_id((uint64_t)(uintptr_t)arg);
	struct vm *vm, *next;

	(void)fd;
	(void)what;
	if (p == NULL)
		return;
	/* Pooled VMs that ended on their own go; new ones take their
	 * place. */
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		if (vm->pool == p->id && vm->spec.pooled &&
		    (vm->state == VM_STOPPED || vm->state == VM_CRASHED))
			vm_stop(vm, NULL, NULL);
	vmpool_fill(p);
}

static void
vmpool_later(uint64_t id)
{
	struct timeval now = { 0, 0 };

	if (event_base_once(vm_core.env.base, -1, EV_TIMEOUT, vmpool_tidy,
	    (void *)(uintptr_t)id, &now) < 0)
		log_warn("pool %llu: cannot schedule a refill",
		    (unsigned long long)id);
}

/* The request's fields as one string: its op and id left out, keys in
 * order. NULL without memory. */
static char *
vmpool_canon(json_t *req)
{
	json_t *j = json_deep_copy(req);
	const char *arch;
	char *s;

	if (j == NULL)
		return NULL;
	json_object_del(j, J_OP);
	json_object_del(j, J_ID);
	/* The host's architecture, named or not, is the same request. */
	if ((arch = json_string_value(json_object_get(j, J_ARCH))) != NULL &&
	    strcmp(arch, ctl_arch_name(ctl_arch_host())) == 0)
		json_object_del(j, J_ARCH);
	s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(j);
	return s;
}

static struct vmpool *
vmpool_by_id(uint64_t id)
{
	struct vmpool *p;

	TAILQ_FOREACH(p, &pools, entry)
		if (p->id == id)
			return p;
	return NULL;
}

static struct vmpool *
vmpool_find(uid_t uid, const char *fields)
{
	struct vmpool *p;

	TAILQ_FOREACH(p, &pools, entry)
		if (p->who.uid == uid && strcmp(p->fields, fields) == 0)
			return p;
	return NULL;
}

static unsigned
vmpool_count(const struct vmpool *p, int ready_only)
{
	struct vm *vm;
	unsigned n = 0;

	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->pool == p->id && vm->spec.pooled &&
		    (vm->state == VM_RUNNING || (!ready_only &&
		    vm->state == VM_STARTING)))
			n++;
	return n;
}

static void
vmpool_started(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct vmpool *p = vmpool_by_id((uint64_t)(uintptr_t)arg);

	if (p != NULL && p->starting > 0)
		p->starting--;
	if (err != NULL && err->errnum == ESTALE && p != NULL) {
		/* Its template failed (and is gone): the next one boots. */
		vmpool_later(p->id);
		return;
	}
	if (err != NULL) {
		if (p != NULL) {
			snprintf(p->error, sizeof(p->error), "%s", err->msg);
			log_warn("pool %llu: a start failed; not refilling "
			    "until the next SetPool or reload: %s",
			    (unsigned long long)p->id, err->msg);
		}
		return;
	}
	if (p == NULL || vmpool_count(p, 1) > p->size) {
		/* Made smaller or removed while this one started. */
		vm->spec.pooled = 0;
		vm_stop(vm, NULL, NULL);
		return;
	}
	log_info("vm %s: ready in pool %llu", vm->id,
	    (unsigned long long)p->id);
}

/* Starts what the pool lacks. */
static void
vmpool_fill(struct vmpool *p)
{
	struct ctl_limits lim;
	struct ctl_start req;
	struct cap_err err;
	struct vm *vm;

	while (!p->error[0] && !vm_core.shutting_down &&
	    vmpool_count(p, 1) + p->starting < p->size) {
		vm_ctl_limits(&lim);
		if (ctl_parse_start(p->req, &lim, &req, &err) < 0 ||
		    vm_start_pooled(&req, &p->who, p->id, vmpool_started,
		    (void *)(uintptr_t)p->id, &vm, &err) < 0) {
			ctl_start_free(&req);
			snprintf(p->error, sizeof(p->error), "%s", err.msg);
			log_warn("pool %llu: cannot start a VM: %s",
			    (unsigned long long)p->id, err.msg);
			return;
		}
		ctl_start_free(&req);
		p->starting++;
	}
}

static json_t *
vmpool_json(const struct vmpool *p)
{
	json_t *o = json_pack("{s:I, s:i, s:i, s:i, s:I, s:i}",
	    J_POOL_ID, (json_int_t)p->id, J_SIZE, (int)p->size,
	    J_READY, (int)vmpool_count(p, 1), J_STARTING, (int)p->starting,
	    J_HANDED_OUT, (json_int_t)p->handed_out,
	    J_OWNER_UID, (int)p->who.uid);
	json_t *req = json_deep_copy(p->req);

	if (o == NULL || req == NULL) {
		json_decref(o);
		json_decref(req);
		return NULL;
	}
	json_object_del(req, J_OP);
	json_object_del(req, J_ID);
	json_object_set_new(o, J_REQUEST, req);
	if (p->error[0])
		json_object_set_new(o, J_ERROR, json_string(p->error));
	if (p->config_line != 0)
		json_object_set_new(o, J_CONFIGURED, json_true());
	return o;
}

static void
vmpool_free(struct vmpool *p)
{
	struct vm *vm, *next;

	TAILQ_REMOVE(&pools, p, entry);
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		if (vmpool_holds(vm, p->id))
			vm_stop(vm, NULL, NULL);
	json_decref(p->req);
	free(p->fields);
	free(p);
}

/* SetPool's work: req checked as the StartVM it stands for; unless
 * check_only, the pool made, resized or (size 0) removed. *pp: the pool,
 * or NULL once removed. */
static int
vmpool_apply(const struct caller *who, json_t *req, int check_only,
    struct vmpool **pp, struct cap_err *err)
{
	struct ctl_limits lim;
	struct ctl_start st;
	struct vmpool *p;
	struct vm *vm, *next;
	json_t *j, *sz;
	char *fields;
	unsigned n = 0;
	int r;

	*pp = NULL;
	sz = json_object_get(req, J_SIZE);
	if (!json_is_integer(sz) || json_integer_value(sz) < 0 ||
	    json_integer_value(sz) > VMPOOL_MAX_SIZE)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "size must "
		    "be a whole number from 0 to %d", VMPOOL_MAX_SIZE);
	if (json_object_get(req, J_SANDBOX) != NULL)
		return cap_err_set(err, EINVAL, E_INVALID_ARGUMENT, "a sandbox "
		    "has one VM at a time: it cannot be pooled");
	/* The request, checked as the StartVM it stands for. */
	if ((j = json_deep_copy(req)) == NULL)
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	json_object_del(j, J_SIZE);
	json_object_del(j, J_ID);
	json_object_set_new(j, J_OP, json_string(OP_START_VM));
	vm_ctl_limits(&lim);
	if ((r = ctl_parse_start(j, &lim, &st, err)) < 0) {
		json_decref(j);
		return r;
	}
	r = vm_check_arch(&st, err);
	ctl_start_free(&st);
	if (r < 0) {
		json_decref(j);
		return r;
	}
	if ((fields = vmpool_canon(j)) == NULL) {
		json_decref(j);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	p = vmpool_find(who->uid, fields);
	if (p == NULL && json_integer_value(sz) > 0) {
		TAILQ_FOREACH(p, &pools, entry)
			n += p->who.uid == who->uid;
		if (n >= VMPOOL_MAX_PER_USER) {
			free(fields);
			json_decref(j);
			return cap_err_set(err, EAGAIN, E_LIMIT, "uid %u "
			    "has %u pools already; the limit is %d",
			    (unsigned)who->uid, n, VMPOOL_MAX_PER_USER);
		}
		if (check_only) {
			free(fields);
			json_decref(j);
			return 0;
		}
		if ((p = calloc(1, sizeof(*p))) == NULL) {
			free(fields);
			json_decref(j);
			return cap_err_set(err, ENOMEM, E_INTERNAL,
			    "out of memory");
		}
		p->id = next_id++;
		p->who = *who;
		p->fields = fields;
		p->req = j;
		TAILQ_INSERT_TAIL(&pools, p, entry);
	} else {
		free(fields);
		json_decref(j);
	}
	if (p == NULL || check_only)
		return 0;
	p->size = (unsigned)json_integer_value(sz);
	p->error[0] = '\0';
	if (p->size == 0) {
		log_info("pool %llu: removed", (unsigned long long)p->id);
		vmpool_free(p);
		return 0;
	}
	/* Smaller: the ones past the size go. */
	n = 0;
	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		n += vmpool_holds(vm, p->id);
	TAILQ_FOREACH_SAFE(vm, &vm_core.vms, entry, next)
		if (n > p->size && vmpool_holds(vm, p->id)) {
			vm_stop(vm, NULL, NULL);
			n--;
		}
	vmpool_fill(p);
	*pp = p;
	return 0;
}

int
vmpool_set(const struct caller *who, json_t *req, json_t **out,
    struct cap_err *err)
{
	struct vmpool *p;
	int r;

	if ((r = vmpool_apply(who, req, 0, &p, err)) < 0)
		return r;
	*out = p != NULL ? vmpool_json(p) : json_null();
	return 0;
}

/* One `pool` line as a user and a SetPool request; errors say where. */
static int
vmpool_line(const struct config_pool *cp, const char *file,
    struct caller *who, json_t **req, struct cap_err *err)
{
	struct cap_err e;

	*req = NULL;
	if (caller_of_user(cp->user, who, &e) < 0)
		goto bad;
	if (geteuid() != 0 && who->uid != geteuid()) {
		cap_err_set(&e, EPERM, E_INVALID_ARGUMENT, "capsuled runs as "
		    "uid %u and keeps pools for that user only, not uid %u",
		    (unsigned)geteuid(), (unsigned)who->uid);
		goto bad;
	}
	if ((*req = json_loads(cp->request, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL || !json_is_object(*req)) {
		cap_err_set(&e, EINVAL, E_INVALID_ARGUMENT, "the StartVM "
		    "fields are not a JSON object");
		goto bad;
	}
	if (json_object_get(*req, J_SIZE) != NULL ||
	    json_object_get(*req, J_OP) != NULL) {
		cap_err_set(&e, EINVAL, E_INVALID_ARGUMENT, "the size goes "
		    "before the fields, and they have no \"op\"");
		goto bad;
	}
	json_object_set_new(*req, J_SIZE, json_integer(cp->size));
	return 0;
bad:
	json_decref(*req);
	*req = NULL;
	return cap_err_set(err, e.errnum, e.code, "%s:%u: pool: %s", file,
	    cp->line, e.msg);
}

/* The pool a line makes, as vmpool_find knows it: its fields' canonical
 * JSON (NULL without memory). */
static char *
vmpool_line_fields(json_t *req)
{
	json_t *j = json_deep_copy(req);
	char *s;

	if (j == NULL)
		return NULL;
	json_object_del(j, J_SIZE);
	json_object_set_new(j, J_OP, json_string(OP_START_VM));
	s = vmpool_canon(j);
	json_decref(j);
	return s;
}

/* Lines that would make the same pool twice, or more pools for one user
 * than SetPool allows, are bad as a whole: the error names the line. */
static int
vmpool_lines_agree(const struct config_pool *cps, const char *file,
    const uid_t *uids, char *const *fields, unsigned i, struct cap_err *err)
{
	unsigned same_uid = 1;

	for (unsigned j = 0; j < i; j++) {
		if (fields[j] == NULL || uids[j] != uids[i])
			continue;
		if (strcmp(fields[j], fields[i]) == 0)
			return cap_err_set(err, EEXIST, E_INVALID_ARGUMENT,
			    "%s:%u: pool: the same pool as line %u", file,
			    cps[i].line, cps[j].line);
		same_uid++;
	}
	if (same_uid > VMPOOL_MAX_PER_USER)
		return cap_err_set(err, EAGAIN, E_INVALID_ARGUMENT, "%s:%u: "
		    "pool: more than %d pools for uid %u", file, cps[i].line,
		    VMPOOL_MAX_PER_USER, (unsigned)uids[i]);
	return 0;
}

int
vmpool_configure(const struct config_pool *cps, unsigned n,
    const char *file, int strict, struct cap_err *err)
{
	struct caller who[CONFIG_MAX_POOLS];
	json_t *req[CONFIG_MAX_POOLS] = { NULL };
	char *fields[CONFIG_MAX_POOLS] = { NULL };
	uid_t uids[CONFIG_MAX_POOLS];
	struct vmpool *p, *next;
	struct cap_err e, f;
	unsigned i;
	int r, failed = 0;

	if (n > CONFIG_MAX_POOLS)
		n = CONFIG_MAX_POOLS;
	/* Every line checked first; at start-up a bad one stops capsuled
	 * before any VM starts. */
	for (i = 0; i < n; i++) {
		if ((r = vmpool_line(&cps[i], file, &who[i], &req[i],
		    &e)) == 0) {
			uids[i] = who[i].uid;
			if ((fields[i] = vmpool_line_fields(req[i])) == NULL)
				r = cap_err_set(&e, ENOMEM, E_INTERNAL,
				    "out of memory");
			else if ((r = vmpool_lines_agree(cps, file, uids,
			    fields, i, &e)) == 0 && (r = vmpool_apply(&who[i],
			    req[i], 1, &p, &f)) < 0)
				cap_err_set(&e, f.errnum, f.code, "%s:%u: "
				    "pool: %.400s", file, cps[i].line, f.msg);
		}
		if (r == 0)
			continue;
		/* At start-up capsuled says it as it exits. */
		if (!strict)
			log_error("%s", e.msg);
		if (!failed)
			*err = e;
		failed = 1;
		json_decref(req[i]);
		req[i] = NULL;
		free(fields[i]);
		fields[i] = NULL;
		if (strict)
			goto out;
	}
	config_gen++;
	for (i = 0; i < n; i++) {
		if (req[i] == NULL)
			continue;
		if (vmpool_apply(&who[i], req[i], 0, &p, &e) < 0) {
			log_error("%s:%u: pool: %s", file, cps[i].line, e.msg);
			if (!failed)
				cap_err_set(err, e.errnum, e.code, "%s:%u: "
				    "pool: %.400s", file, cps[i].line, e.msg);
			failed = 1;
			continue;
		}
		if (p != NULL) {
			p->config_line = cps[i].line;
			p->config_gen = config_gen;
			log_info("pool %llu: %u VM%s for uid %u, from %s:%u",
			    (unsigned long long)p->id, p->size,
			    p->size == 1 ? "" : "s", (unsigned)p->who.uid,
			    file, p->config_line);
		}
	}
	/* Lines that are gone take their pools with them; not while a
	 * line failed (a name service that did not answer, say): its pool
	 * may be one of those. */
	TAILQ_FOREACH_SAFE(p, &pools, entry, next)
		if (p->config_line != 0 && p->config_gen != config_gen) {
			if (failed) {
				p->config_gen = config_gen;
				log_warn("pool %llu: kept, as %s has lines that "
				    "failed", (unsigned long long)p->id, file);
				continue;
			}
			log_info("pool %llu: no longer in %s; removed",
			    (unsigned long long)p->id, file);
			vmpool_free(p);
		}
out:
	for (i = 0; i < n; i++) {
		json_decref(req[i]);
		free(fields[i]);
	}
	return failed ? -1 : 0;
}

struct vm *
vmpool_take(const struct caller *who, json_t *req, uint64_t owner)
{
	struct vmpool *p;
	struct vm *vm;
	char *fields;

	if (TAILQ_EMPTY(&pools) || (fields = vmpool_canon(req)) == NULL)
		return NULL;
	p = vmpool_find(who->uid, fields);
	free(fields);
	if (p == NULL)
		return NULL;
	TAILQ_FOREACH(vm, &vm_core.vms, entry)
		if (vm->pool == p->id && vm->spec.pooled &&
		    vm->state == VM_RUNNING)
			break;
	if (vm == NULL)
		return NULL;
	vm_unpool(vm, owner);
	p->handed_out++;
	vmpool_fill(p);
	return vm;
}

json_t *
vmpool_list_json(uid_t uid)
{
	struct vmpool *p;
	json_t *a = json_array();

	TAILQ_FOREACH(p, &pools, entry)
		if (a != NULL && (uid == 0 || p->who.uid == uid))
			json_array_append_new(a, vmpool_json(p));
	return a;
}

void
vmpool_vm_gone(struct vm *vm)
{
	struct vmpool *p;

	if (vm->pool == 0 || !vm->spec.pooled)
		return;
	vm->spec.pooled = 0;
	if (vm->t_ready == 0 || (p = vmpool_by_id(vm->pool)) == NULL)
		return;
	/* A pooled VM that went is replaced (not one that failed to start:
	 * vmpool_started says so). */
	vmpool_later(p->id);
}

void
vmpool_vm_ended(struct vm *vm)
{
	if (vm->pool != 0 && vm->spec.pooled && vmpool_by_id(vm->pool) != NULL)
		vmpool_later(vm->pool);
}

void
vmpool_clear(void)
{
	struct vmpool *p;

	while ((p = TAILQ_FIRST(&pools)) != NULL) {
		TAILQ_REMOVE(&pools, p, entry);
		json_decref(p->req);
		free(p->fields);
		free(p);
	}
}
