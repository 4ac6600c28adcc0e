/*
 * vmidle.c — stopping a VM nobody uses (StartVM idle_timeout_seconds,
 * `--idle-timeout`). Once a second the VM is busy if an exec or a copy
 * is open on its exec socket, or a connection through a published port
 * or (allow mode) out of the guest; idle for the timeout since it was
 * last busy, it is stopped like StopVM would (a sandbox keeps its disk)
 * and the log and the event stream say why. What runs inside the guest
 * on its own (a command started with exec -d) does not count.
 */
#include <event2/event.h>

#include "egress.h"
#include "events.h"
#include "log.h"
#include "proto.h"
#include "proxy.h"
#include "publish.h"
#include "util.h"
#include "vmpriv.h"

#define VMIDLE_TICK_S	1

static int
vmidle_busy(const struct vm *vm)
{
	struct egress_stats st = { 0 };

	if (vm->egress != NULL)
		egress_stats(vm->egress, &st);
	return proxy_sessions(vm->proxy) > 0 ||
	    publish_conns(vm->publish) > 0 || st.open > 0;
}

static void
vmidle_tick(evutil_socket_t fd, short what, void *arg)
{
	struct vm *vm = arg;
	uint64_t now = util_now_ms();

	if (vm->state != VM_RUNNING || vm->spec.pooled || vmidle_busy(vm)) {
		vm->idle_since = now;
		return;
	}
	if (now - vm->idle_since < (uint64_t)vm->spec.idle_seconds * 1000)
		return;
	log_info("vm %s: idle for %u s (no exec, copy or forwarded "
	    "connection): stopping it", vm->id, vm->spec.idle_seconds);
	vm_event(vm, EV_IDLE, json_pack("{s:i}", J_IDLE_TIMEOUT,
	    (int)vm->spec.idle_seconds));
	vmidle_stop(vm);
	vm_stop(vm, NULL, NULL);
}

void
vmidle_start(struct vm *vm)
{
	struct timeval tick = { VMIDLE_TICK_S, 0 };

	if (vm->spec.idle_seconds == 0 || vm->idle_ev != NULL)
		return;
	vm->idle_since = util_now_ms();
	vm->idle_ev = event_new(vm_core.env.base, -1, EV_PERSIST, vmidle_tick,
	    vm);
	if (vm->idle_ev == NULL || event_add(vm->idle_ev, &tick) < 0)
		log_warn("vm %s: cannot watch for idleness; it will not be "
		    "stopped when idle", vm->id);
}

void
vmidle_stop(struct vm *vm)
{
	if (vm->idle_ev != NULL)
		event_free(vm->idle_ev);
	vm->idle_ev = NULL;
}
