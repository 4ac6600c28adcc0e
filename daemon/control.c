/*
 * control.c — the control socket: one JSON request per line, one reply per
 * request, in order. A connection handles one request at a time (reading
 * pauses while StartVM or StopVM is in progress), which keeps replies in
 * order without a queue.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caller.h"
#include "control.h"
#include "ctl.h"
#include "events.h"
#include "log.h"
#include "peer.h"
#include "proto.h"
#include "util.h"
#include "image.h"
#include "imgimport.h"
#include "sandbox.h"
#include "vm.h"
#include "vmfork.h"
#include "vmpool.h"
#include "vmsnap.h"

#define CTL_OUT_HIGH	(1024 * 1024)	/* unread replies before we stop */
#define CTL_OUT_LOW	(256 * 1024)

struct conn {
	TAILQ_ENTRY(conn)	 entry;
	uint64_t		 id;
	struct caller		 who;		/* the kernel's word, at accept */
	struct events_sub	*sub;		/* Events: a stream now */
	struct peer		*peer;
	json_t			*req;		/* in progress, or NULL */
	int			 waiting;	/* StopVM callbacks to come */
	json_t			*stopped;	/* StopVM: ids gone so far */
	int			 gone;		/* peer hung up meanwhile */
	int			 last;		/* peer half-closed: last reply */
	int			 progress;	/* an import reports steps */
	char			*start_retry;	/* StartVM booted after a
						 * restore failed: why */
};

static struct {
	struct event_base	*base;
	const struct hv_ops	*hv;
	const struct hv_caps	*caps;
	control_doctor_fn	*doctor;
	struct listener		*listener;
	struct util_sock	 sock;		/* ours to unlink at exit */
	uint64_t		 next_id;
	TAILQ_HEAD(, conn)	 conns;
} ctl = { .next_id = 1 };

/* Frees the connection; what is queued for a reader still gets out. */
static void
conn_free(struct conn *c)
{
	TAILQ_REMOVE(&ctl.conns, c, entry);
	events_unsubscribe(c->sub);
	free(c->start_retry);
	json_decref(c->req);
	json_decref(c->stopped);
	if (c->peer != NULL) {
		if (c->gone)
			peer_free(c->peer);
		else
			peer_close_after_flush(c->peer);
	}
	free(c);
}

/* The request in progress is answered: reply, and read the next one. */
static void
conn_done(struct conn *c, json_t *reply)
{
	json_decref(c->req);
	c->req = NULL;
	if (c->gone || c->peer == NULL) {
		json_decref(reply);
		conn_free(c);
		return;
	}
	peer_send_json(c->peer, reply);
	if (c->last)
		conn_free(c);
	else if (peer_queued(c->peer) <= CTL_OUT_HIGH)
		peer_resume(c->peer);
	/* else: a client that does not read its replies gets no more until
	 * it does (conn_drain), so it cannot make us buffer without end. */
}

static void
conn_drain(struct peer *p, void *arg)
{
	struct conn *c = arg;

	if (c->req == NULL && !c->last)
		peer_resume(p);
}

static void
conn_error(struct conn *c, const struct cap_err *err)
{
	conn_done(c, ctl_reply_error(c->req, err));
}

/* The outcome of an asynchronous op: err, or ok with key: value (taken). */
static void
conn_answer(struct conn *c, const struct cap_err *err, const char *key,
    json_t *value)
{
	json_t *r;

	if (err != NULL) {
		json_decref(value);
		conn_error(c, err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, key, value);
	conn_done(c, r);
}

/* The VM the request's vm_id names, if the caller may see it; else the
 * error is the reply and NULL. */
static struct vm *
conn_vm(struct conn *c)
{
	struct cap_err err;
	const char *id;
	struct vm *vm;

	if (ctl_get_string(c->req, J_VM_ID, 1, &id, &err) < 0) {
		conn_error(c, &err);
		return NULL;
	}
	if ((vm = vm_find(id)) == NULL || !vm_visible(vm, c->who.uid)) {
		cap_err_set(&err, ENOENT, E_NOT_FOUND, "unknown vm_id %.64s", id);
		conn_error(c, &err);
		return NULL;
	}
	return vm;
}

static void
op_ping(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req), *b = json_array();

	for (const struct hv_ops *const *h = hv_list(); *h != NULL; h++)
		json_array_append_new(b, json_string((*h)->name));
	json_object_set_new(r, J_VERSION, json_string(CAPSULE_VERSION));
	json_object_set_new(r, J_PROTOCOL, json_integer(CAPSULE_PROTOCOL));
	json_object_set_new(r, J_ACCEL,
	    json_string(hv_accel_name(ctl.caps->accel)));
	json_object_set_new(r, J_BACKEND, json_string(ctl.hv->name));
	json_object_set_new(r, J_BACKENDS, b);
	if (ctl.caps->accel_why[0])
		json_object_set_new(r, J_ACCEL_NOTE,
		    json_string(ctl.caps->accel_why));
	json_object_set_new(r, J_HYPERVISOR, json_string(ctl.caps->version));
	json_object_set_new(r, J_VMS,
	    json_integer(vm_count_visible(c->who.uid, -1)));
	conn_done(c, r);
}

static void
op_list(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req);

	json_object_set_new(r, J_VMS, vm_list_json(c->who.uid));
	conn_done(c, r);
}

static void	op_start(struct conn *);

static void
start_done(struct vm *vm, const struct cap_err *err, void *arg)
{
	struct conn *c = arg;
	json_t *r, *fields, *t;

	/* Restoring from a template failed (it is gone now): the start
	 * boots instead, once. The cache never fails a start. */
	if (err != NULL && err->errnum == ESTALE && c->start_retry == NULL &&
	    !c->gone && !c->last && (c->start_retry = strdup(err->msg)) != NULL) {
		log_warn("control: StartVM boots after a failed restore");
		op_start(c);
		return;
	}
	if (err != NULL) {
		free(c->start_retry);
		c->start_retry = NULL;
		conn_error(c, err);
		return;
	}
	r = ctl_reply_ok(c->req);
	fields = vm_started_json(vm);
	if (c->start_retry != NULL &&
	    (t = json_object_get(fields, J_TIMING_MS)) != NULL)
		json_object_set_new(t, T_START_NOTE, json_sprintf("booted "
		    "after restoring the template failed: %.300s",
		    c->start_retry));
	free(c->start_retry);
	c->start_retry = NULL;
	json_object_update(r, fields);
	json_decref(fields);
	conn_done(c, r);
}

/* StartVM {"sandbox": NAME}: the sandbox's own request, and this one's
 * stop_on_disconnect. Only the owner starts a sandbox: the VM runs with
 * the owner's rights on the paths it names. */
static json_t *
start_sandbox_request(struct conn *c, const char **id, struct cap_err *err)
{
	static const char *const known[] = { J_SANDBOX, J_STOP_ON_DISCONNECT,
	    NULL };
	struct sandbox *sb;
	const char *ref;
	json_t *req, *v;

	if (ctl_check_fields(c->req, OP_START_VM, known, err) < 0 ||
	    ctl_get_string(c->req, J_SANDBOX, 1, &ref, err) < 0)
		return NULL;
	if ((sb = sandbox_find(c->who.uid, ref)) == NULL) {
		cap_err_set(err, ENOENT, E_NOT_FOUND, "no sandbox %.80s", ref);
		return NULL;
	}
	if (sandbox_owner(sb) != c->who.uid) {
		cap_err_set(err, EPERM, E_PERMISSION_DENIED, "sandbox %s is uid "
		    "%u's: only its owner starts it", sandbox_name(sb),
		    (unsigned)sandbox_owner(sb));
		return NULL;
	}
	if ((req = sandbox_start_request(sb)) == NULL) {
		cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
		return NULL;
	}
	if ((v = json_object_get(c->req, J_STOP_ON_DISCONNECT)) != NULL)
		json_object_set(req, J_STOP_ON_DISCONNECT, v);
	*id = sandbox_id(sb);
	return req;
}

/* StartVM {"snapshot": NAME}: a new VM from the caller's snapshot, with
 * this request's stop_on_disconnect and nothing else. */
static void
start_snapshot(struct conn *c)
{
	static const char *const known[] = { J_SNAPSHOT, J_STOP_ON_DISCONNECT,
	    NULL };
	int stop_on_disconnect = 0;
	struct cap_err err;
	const char *name;

	if (ctl_check_fields(c->req, OP_START_VM, known, &err) < 0 ||
	    ctl_get_string(c->req, J_SNAPSHOT, 1, &name, &err) < 0 ||
	    ctl_get_bool(c->req, J_STOP_ON_DISCONNECT, &stop_on_disconnect,
	    &err) < 0 ||
	    vmsnap_start(&c->who, name, c->id, stop_on_disconnect, start_done,
	    c, &err) < 0)
		conn_error(c, &err);
}

static void
op_start(struct conn *c)
{
	struct vm *vm;
	struct ctl_limits lim;
	struct ctl_start req;
	struct cap_err err;
	const char *sandbox = NULL;
	json_t *j = c->req;
	int r;

	if (json_object_get(c->req, J_SNAPSHOT) != NULL) {
		start_snapshot(c);
		return;
	}
	if (json_object_get(c->req, J_SANDBOX) != NULL &&
	    (j = start_sandbox_request(c, &sandbox, &err)) == NULL) {
		conn_error(c, &err);
		return;
	}
	vm_ctl_limits(&lim);
	r = ctl_parse_start(j, &lim, &req, &err);
	if (j != c->req)
		json_decref(j);
	if (r < 0) {
		if (sandbox != NULL)
			cap_err_wrap(&err, "the sandbox's configuration");
		conn_error(c, &err);
		return;
	}
	/* A warm pool of exactly this request has one ready: at once. */
	if (sandbox == NULL && c->start_retry == NULL &&
	    (vm = vmpool_take(&c->who, c->req, c->id)) != NULL) {
		ctl_start_free(&req);
		start_done(vm, NULL, c);
		return;
	}
	r = vm_start(&req, sandbox, c->id, &c->who, start_done, c, &err);
	ctl_start_free(&req);
	if (r < 0) {
		free(c->start_retry);
		c->start_retry = NULL;
		conn_error(c, &err);
	}
}

/* CreateSandbox: a name and StartVM's fields, checked as a StartVM. */
static void
op_create_sandbox(struct conn *c)
{
	struct ctl_limits lim;
	struct ctl_start req;
	struct cap_err err;
	json_t *j, *out, *rep;
	int r;

	if ((j = json_deep_copy(c->req)) == NULL) {
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		conn_error(c, &err);
		return;
	}
	json_object_del(j, J_NAME);
	json_object_set_new(j, J_OP, json_string(OP_START_VM));
	vm_ctl_limits(&lim);
	if (ctl_parse_start(j, &lim, &req, &err) < 0) {
		json_decref(j);
		conn_error(c, &err);
		return;
	}
	if ((r = vm_check_arch(&req, &err)) == 0)
		r = vm_check_disk(&c->who, req.disk_mib, &err);
	ctl_start_free(&req);
	json_decref(j);
	if (r < 0 || sandbox_create(&c->who, c->req, &out, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	rep = ctl_reply_ok(c->req);
	json_object_set_new(rep, J_SANDBOX, out);
	conn_done(c, rep);
}

/* SetPool: "size" and StartVM's fields (vmpool.c). */
static void
op_set_pool(struct conn *c)
{
	struct cap_err err;
	json_t *out, *r;

	if (vmpool_set(&c->who, c->req, &out, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_POOL, out);
	conn_done(c, r);
}

static void
fork_done(json_t *vms, const struct cap_err *err, void *arg)
{
	struct conn *c = arg;

	/* It went while the copies started: theirs went with it. */
	if (err == NULL && (c->gone || c->last))
		vm_owner_gone(c->id);
	conn_answer(c, err, J_VMS, vms);
}

/* ForkVM {vm_id, count, stop_on_disconnect}: copies of a running VM,
 * the caller's (vmfork.c). */
static void
op_fork(struct conn *c)
{
	json_t *n = json_object_get(c->req, J_COUNT);
	int stop_on_disconnect = 0;
	struct cap_err err;
	struct vm *vm;

	if (ctl_get_bool(c->req, J_STOP_ON_DISCONNECT, &stop_on_disconnect,
	    &err) < 0) {
		conn_error(c, &err);
		return;
	}
	if (n != NULL && (!json_is_integer(n) || json_integer_value(n) < 1 ||
	    json_integer_value(n) > VMFORK_MAX)) {
		cap_err_set(&err, EINVAL, E_INVALID_ARGUMENT, "\"%s\" must be "
		    "a whole number from 1 to %d", J_COUNT, VMFORK_MAX);
		conn_error(c, &err);
		return;
	}
	if ((vm = conn_vm(c)) == NULL)
		return;
	if (vmfork_start(vm, &c->who, c->id, n != NULL ?
	    (unsigned)json_integer_value(n) : 1, stop_on_disconnect,
	    fork_done, c, &err) < 0)
		conn_error(c, &err);
}

static void
snapshot_done(json_t *snap, const struct cap_err *err, void *arg)
{
	conn_answer(arg, err, J_SNAPSHOT, snap);
}

/* SnapshotVM {vm_id, name} (vmsnap.c). */
static void
op_snapshot(struct conn *c)
{
	struct cap_err err;
	const char *name;
	struct vm *vm;

	if (ctl_get_string(c->req, J_NAME, 1, &name, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	if ((vm = conn_vm(c)) == NULL)
		return;
	if (vmsnap_take(vm, &c->who, name, snapshot_done, c, &err) < 0)
		conn_error(c, &err);
}

static void
op_list_snapshots(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req);

	json_object_set_new(r, J_SNAPSHOTS, vmsnap_list_json(c->who.uid));
	conn_done(c, r);
}

static void
op_remove_snapshot(struct conn *c)
{
	struct cap_err err;
	const char *name;
	json_t *r;

	if (ctl_get_string(c->req, J_NAME, 1, &name, &err) < 0 ||
	    vmsnap_remove(c->who.uid, name, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_NAME, json_string(name));
	conn_done(c, r);
}

static void
op_list_pools(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req);

	json_object_set_new(r, J_POOLS, vmpool_list_json(c->who.uid));
	conn_done(c, r);
}

static void
op_list_sandboxes(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req);

	json_object_set_new(r, J_SANDBOXES, sandbox_list_json(c->who.uid));
	conn_done(c, r);
}

static void
remove_sandbox(struct conn *c)
{
	const char *ref;
	struct cap_err err;
	json_t *out, *r;

	if (ctl_get_string(c->req, J_SANDBOX, 1, &ref, &err) < 0 ||
	    sandbox_remove(c->who.uid, ref, &out, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_REMOVED, out);
	conn_done(c, r);
}

static void
remove_stopped(const char *vm_id, void *arg)
{
	remove_sandbox(arg);
}

/* RemoveSandbox; with "force", a VM running from it is stopped first. */
static void
op_remove_sandbox(struct conn *c)
{
	static const char *const known[] = { J_SANDBOX, J_FORCE, NULL };
	const char *ref, *vm_id;
	struct sandbox *sb;
	struct cap_err err;
	struct vm *vm;
	int force = 0;

	if (ctl_check_fields(c->req, OP_REMOVE_SANDBOX, known, &err) < 0 ||
	    ctl_get_string(c->req, J_SANDBOX, 1, &ref, &err) < 0 ||
	    ctl_get_bool(c->req, J_FORCE, &force, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	if (force && (sb = sandbox_find(c->who.uid, ref)) != NULL &&
	    (vm_id = vm_of_sandbox(sandbox_id(sb), NULL)) != NULL &&
	    (vm = vm_find(vm_id)) != NULL) {
		vm_stop(vm, remove_stopped, c);
		return;
	}
	remove_sandbox(c);
}

static void
stop_done(const char *vm_id, void *arg)
{
	struct conn *c = arg;
	json_t *r;

	if (vm_id != NULL)
		json_array_append_new(c->stopped, json_string(vm_id));
	if (--c->waiting > 0)
		return;
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_STOPPED, c->stopped);
	c->stopped = NULL;
	conn_done(c, r);
}

static void
op_stop(struct conn *c)
{
	struct cap_err err;
	const char *id;
	struct vm *vm;
	int all;

	if (ctl_parse_stop(c->req, &id, &all, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	/* Another user's VM is not there, as far as this caller can tell. */
	if (id != NULL && ((vm = vm_find(id)) == NULL ||
	    !vm_visible(vm, c->who.uid))) {
		cap_err_set(&err, ENOENT, E_NOT_FOUND, "unknown vm_id %.64s", id);
		conn_error(c, &err);
		return;
	}
	c->stopped = json_array();
	if (id != NULL) {
		c->waiting = 1;
		vm_stop(vm, stop_done, c);
		return;
	}
	c->waiting = 1;		/* hold the reply until the loop is done */
	if (all)
		c->waiting += vm_stop_visible(c->who.uid, stop_done, c);
	else	/* cleanroom's usage: one connection per VM, no id */
		c->waiting += vm_stop_owned(c->id, stop_done, c);
	stop_done(NULL, c);
}

/* PauseVM and ResumeVM. */
static void
op_pause(struct conn *c)
{
	const char *op = json_string_value(json_object_get(c->req, J_OP));
	struct cap_err err;
	struct vm *vm;
	json_t *r;

	if ((vm = conn_vm(c)) == NULL)
		return;
	if (vm_pause(vm, strcmp(op, OP_PAUSE_VM) == 0, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_VM_ID, json_string(vm_id(vm)));
	json_object_set_new(r, J_STATE,
	    json_string(vm_state_name(vm_state(vm))));
	conn_done(c, r);
}

/* From now on the connection is a stream of events. */
static void
op_events(struct conn *c)
{
	struct cap_err err;

	if ((c->sub = events_subscribe(c->peer, c->who.uid)) == NULL) {
		cap_err_set(&err, ENOMEM, E_INTERNAL, "out of memory");
		conn_error(c, &err);
		return;
	}
	peer_send_json(c->peer, ctl_reply_ok(c->req));
	json_decref(c->req);
	c->req = NULL;
	/* Nothing more is read from it: closing it is how it ends. */
}

static void
op_doctor(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req), *d = ctl.doctor(c->who.uid);

	json_object_update(r, d);
	json_decref(d);
	conn_done(c, r);
}

/* ---- images ---- */

static void
import_progress(void *arg, const char *stage, const char *msg)
{
	struct conn *c = arg;
	json_t *line, *id;

	if (!c->progress || c->gone || c->peer == NULL)
		return;
	/* Steps a reader does not take are dropped, not queued without end */
	if (peer_queued(c->peer) > CTL_OUT_LOW)
		return;
	line = json_pack("{s:{s:s,s:s}}", J_PROGRESS, J_STAGE, stage,
	    J_MESSAGE, msg);
	if (line == NULL)
		return;
	if ((id = json_object_get(c->req, J_ID)) != NULL)
		json_object_set(line, J_ID, id);
	peer_send_json(c->peer, line);
}

static void
import_done(void *arg, const struct cap_err *err, json_t *image)
{
	conn_answer(arg, err, J_IMAGE, image);
}

static const struct imgimport_cbs import_cbs = {
	.progress = import_progress,
	.done = import_done,
};

/* ImportImage and PullImage. */
static void
op_import(struct conn *c)
{
	static const char *const known_import[] = { J_PATH, J_NAME,
	    J_PROGRESS, NULL };
	static const char *const known_pull[] = { J_REF, J_NAME, J_TLS_VERIFY,
	    J_PROGRESS, NULL };
	const char *op = json_string_value(json_object_get(c->req, J_OP));
	int pull = strcmp(op, OP_PULL_IMAGE) == 0;
	struct imgimport_req r = { .who = &c->who, .tls_verify = 1 };
	struct cap_err err;

	c->progress = 0;	/* this request's say, not an earlier one's */
	if (ctl_check_fields(c->req, op, pull ? known_pull : known_import,
	    &err) < 0 ||
	    ctl_get_string(c->req, pull ? J_REF : J_PATH, 1,
	    pull ? &r.ref : &r.path, &err) < 0 ||
	    ctl_get_string(c->req, J_NAME, 0, &r.name, &err) < 0 ||
	    ctl_get_bool(c->req, J_PROGRESS, &c->progress, &err) < 0 ||
	    (pull && ctl_get_bool(c->req, J_TLS_VERIFY, &r.tls_verify,
	    &err) < 0) ||
	    imgimport_start(ctl.base, &r, &import_cbs, c, &err) < 0) {
		conn_error(c, &err);
		return;
	}
}

static void
op_images(struct conn *c)
{
	json_t *r = ctl_reply_ok(c->req);

	json_object_set_new(r, J_IMAGES, image_list_json(c->who.uid));
	conn_done(c, r);
}

/* InspectImage and RemoveImage. */
static void
op_image(struct conn *c)
{
	static const char *const known[] = { J_IMAGE, NULL };
	const char *op = json_string_value(json_object_get(c->req, J_OP));
	const char *ref;
	struct cap_err err;
	json_t *out, *r;

	if (ctl_check_fields(c->req, op, known, &err) < 0 ||
	    ctl_get_string(c->req, J_IMAGE, 1, &ref, &err) < 0 ||
	    (strcmp(op, OP_INSPECT_IMAGE) == 0 ?
	    image_inspect(c->who.uid, ref, &out, &err) :
	    image_remove(c->who.uid, ref, &out, &err)) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, strcmp(op, OP_INSPECT_IMAGE) == 0 ? J_IMAGE :
	    J_REMOVED, out);
	conn_done(c, r);
}

static void
op_prune(struct conn *c)
{
	struct cap_err err;
	json_t *out, *r;

	if (image_prune(&out, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	r = ctl_reply_ok(c->req);
	json_object_set_new(r, J_REMOVED, out);
	conn_done(c, r);
}

static const struct {
	const char	*name;
	void		(*fn)(struct conn *);
	const char	*const *fields;	/* NULL: op checks its own */
} ops[] = {
	{ OP_PING, op_ping, (const char *const[]){ NULL } },
	{ OP_LIST_VMS, op_list, (const char *const[]){ NULL } },
	{ OP_START_VM, op_start, NULL },
	{ OP_STOP_VM, op_stop, NULL },
	{ OP_PAUSE_VM, op_pause, (const char *const[]){ J_VM_ID, NULL } },
	{ OP_RESUME_VM, op_pause, (const char *const[]){ J_VM_ID, NULL } },
	{ OP_EVENTS, op_events, (const char *const[]){ NULL } },
	{ OP_DOCTOR, op_doctor, (const char *const[]){ NULL } },
	{ OP_IMPORT_IMAGE, op_import, NULL },
	{ OP_PULL_IMAGE, op_import, NULL },
	{ OP_LIST_IMAGES, op_images, (const char *const[]){ NULL } },
	{ OP_INSPECT_IMAGE, op_image, NULL },
	{ OP_REMOVE_IMAGE, op_image, NULL },
	{ OP_PRUNE_IMAGES, op_prune, (const char *const[]){ NULL } },
	{ OP_CREATE_SANDBOX, op_create_sandbox, NULL },
	{ OP_LIST_SANDBOXES, op_list_sandboxes, (const char *const[]){ NULL } },
	{ OP_REMOVE_SANDBOX, op_remove_sandbox, NULL },
	{ OP_SET_POOL, op_set_pool, NULL },
	{ OP_LIST_POOLS, op_list_pools, (const char *const[]){ NULL } },
	{ OP_FORK_VM, op_fork, (const char *const[]){ J_VM_ID, J_COUNT,
	    J_STOP_ON_DISCONNECT, NULL } },
	{ OP_SNAPSHOT_VM, op_snapshot, (const char *const[]){ J_VM_ID, J_NAME,
	    NULL } },
	{ OP_LIST_SNAPSHOTS, op_list_snapshots, (const char *const[]){ NULL } },
	{ OP_REMOVE_SNAPSHOT, op_remove_snapshot, (const char *const[]){
	    J_NAME, NULL } },
};

static void
conn_line(struct peer *p, char *line, size_t len, void *arg)
{
	struct conn *c = arg;
	struct cap_err err;
	const char *op;

	/* One request at a time; the reply resumes reading. */
	peer_pause(p);
	if (ctl_parse_request(line, len, &c->req, &op, &err) < 0) {
		conn_error(c, &err);
		return;
	}
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(op, ops[i].name) != 0)
			continue;
		if (ops[i].fields != NULL &&
		    ctl_check_fields(c->req, op, ops[i].fields, &err) < 0) {
			conn_error(c, &err);
			return;
		}
		log_debug("control: %s from uid %u", op,
		    (unsigned)c->who.uid);
		ops[i].fn(c);
		return;
	}
	{
		char known[512];
		size_t n = 0;

		known[0] = '\0';
		for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]) &&
		    n < sizeof(known); i++)
			n += (size_t)snprintf(known + n, sizeof(known) - n,
			    "%s%s", i ? ", " : "", ops[i].name);
		cap_err_set(&err, ENOTSUP, E_UNSUPPORTED_OP, "unsupported op "
		    "\"%.64s\"; known ops: %s", op, known);
	}
	conn_error(c, &err);
}

static void
conn_overflow(struct peer *p, const char *why, void *arg)
{
	struct conn *c = arg;
	struct cap_err err;

	cap_err_set(&err, E2BIG, E_TOO_LARGE, "request %s; closing the "
	    "connection", why);
	peer_send_json(p, ctl_reply_error(NULL, &err));
	vm_owner_gone(c->id);
	c->peer = NULL;
	peer_close_after_flush(p);
	if (c->req != NULL)
		c->gone = 1;
	else
		conn_free(c);
}

static void
conn_eof(struct peer *p, int hangup, void *arg)
{
	struct conn *c = arg;

	vm_owner_gone(c->id);
	c->gone = hangup;
	if (c->req != NULL) {
		/* Finish what is in progress; reply if anyone still reads. */
		c->last = 1;
		return;
	}
	conn_free(c);
}

static const struct peer_cbs conn_cbs = {
	.line = conn_line,
	.overflow = conn_overflow,
	.drain = conn_drain,
	.eof = conn_eof,
};

/* Refuses a client in one error line, then closes. */
static void
control_refuse(int s, const struct cap_err *err)
{
	json_t *r = ctl_reply_error(NULL, err);
	char *line = r != NULL ? json_dumps(r, JSON_COMPACT) : NULL;

	if (line != NULL && write(s, line, strlen(line)) > 0 &&
	    write(s, "\n", 1) < 0)
		log_debug("control: could not tell a refused client why");
	free(line);
	json_decref(r);
	close(s);
}

static void
control_accept(int s, void *arg)
{
	struct cap_err err;
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(s);
		return;
	}
	/* Who calls is the kernel's word, never the request's. A daemon of
	 * one user's serves that user (and root) only. */
	if (caller_from_socket(s, &c->who, &err) < 0 ||
	    (geteuid() != 0 && c->who.uid != geteuid() && c->who.uid != 0 &&
	    cap_err_set(&err, EPERM, E_PERMISSION_DENIED, "this capsuled "
	    "serves uid %u only", (unsigned)geteuid()) < 0)) {
		free(c);
		control_refuse(s, &err);
		return;
	}
	c->id = ctl.next_id++;
	c->peer = peer_new(ctl.base, s, PROTO_MAX_LINE, &conn_cbs, c);
	if (c->peer == NULL) {
		free(c);
		return;
	}
	peer_set_drain_mark(c->peer, CTL_OUT_LOW);
	TAILQ_INSERT_TAIL(&ctl.conns, c, entry);
}

/* Only a stale socket may be replaced: a socket nobody answers on. A
 * regular file, a link or anything else at the path is not ours to
 * delete. */
static int
control_serve(int fd, struct cap_err *err)
{
	if ((ctl.listener = listener_new(ctl.base, fd, "control",
	    control_accept, NULL)) == NULL) {
		close(fd);
		return cap_err_set(err, ENOMEM, E_INTERNAL, "out of memory");
	}
	return 0;
}

static void
control_init(const struct control_cfg *cfg)
{
	ctl.base = cfg->base;
	ctl.hv = cfg->hv;
	ctl.caps = cfg->caps;
	ctl.doctor = cfg->doctor;
	TAILQ_INIT(&ctl.conns);
}

int
control_listen(const struct control_cfg *cfg, const char *path, gid_t group,
    struct cap_err *err)
{
	int fd;

	control_init(cfg);
	/* Born 0600, and 0660 only once it belongs to the group. */
	if ((fd = util_listen_unix_own(path, 0600, &ctl.sock, "--socket",
	    err)) < 0)
		return fd;
	if (group != (gid_t)-1 && (fchownat(AT_FDCWD, path, (uid_t)-1, group,
	    AT_SYMLINK_NOFOLLOW) < 0 || chmod(path, 0660) < 0)) {
		int e = errno;

		close(fd);
		util_unlink_own(path, &ctl.sock);
		return cap_err_set(err, e, E_INTERNAL, "cannot give %s to group "
		    "%u: %s", path, (unsigned)group, strerror(e));
	}
	return control_serve(fd, err);
}

int
control_listen_fd(const struct control_cfg *cfg, int fd, struct cap_err *err)
{
	int fl;

	control_init(cfg);
	/* systemd hands the socket over blocking unless the unit says
	 * NonBlocking=yes; the listener's accept loop needs it not to. */
	if ((fl = fcntl(fd, F_GETFL)) < 0 ||
	    fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return cap_err_set(err, errno, E_INTERNAL, "the socket systemd "
		    "passed: %s", strerror(errno));
	return control_serve(fd, err);
}

void
control_close(const char *path)
{
	struct conn *c;

	if (ctl.listener != NULL) {
		listener_free(ctl.listener);
		/* Only the socket we made: someone may have replaced it (and
		 * one systemd handed us stays systemd's). */
		if (path != NULL)
			util_unlink_own(path, &ctl.sock);
	}
	ctl.listener = NULL;
	while ((c = TAILQ_FIRST(&ctl.conns)) != NULL)
		conn_free(c);
}
