/*
 * vmlimits.c — resource limits for each VM's process (see vmlimits.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#endif

#include "vmlimits.h"
#include "proto.h"

#define SYSTEMD_DEST	"org.freedesktop.systemd1"
#define SYSTEMD_PATH	"/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER	"org.freedesktop.systemd1.Manager"

int
vmlimits_use_scope(void)
{
#ifdef __linux__
	return geteuid() == 0 && sd_booted() > 0;
#else
	return 0;
#endif
}

const char *
vmlimits_how(void)
{
	if (vmlimits_use_scope())
		return "a systemd scope per VM (MemoryMax, CPUQuota, TasksMax)";
	return "rlimits on each VM's process (address space, tasks); no CPU "
	    "quota without systemd";
}

int
vmlimits_scope(pid_t pid, const char *vm_id, uint64_t memory_max_mib,
    unsigned cpu_quota, unsigned tasks_max, struct cap_err *err)
{
#ifdef __linux__
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	sd_bus *bus = NULL;
	char unit[96], desc[96];
	int r;

	snprintf(unit, sizeof(unit), "capsule-vm-%s.scope", vm_id);
	snprintf(desc, sizeof(desc), "capsule VM %s", vm_id);
	if ((r = sd_bus_open_system(&bus)) < 0)
		return cap_err_set(err, -r, E_INTERNAL, "cannot reach systemd "
		    "over D-Bus: %s", strerror(-r));
	r = sd_bus_message_new_method_call(bus, &m, SYSTEMD_DEST,
	    SYSTEMD_PATH, SYSTEMD_MANAGER, "StartTransientUnit");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", unit, "fail");
	if (r >= 0)
		r = sd_bus_message_open_container(m, 'a', "(sv)");
	if (r >= 0)
		r = sd_bus_message_append(m, "(sv)", "Description", "s", desc);
	if (r >= 0)
		r = sd_bus_message_append(m, "(sv)", "PIDs", "au", 1,
		    (uint32_t)pid);
	/* Stopped or failed, it goes: nothing is left to collect. */
	if (r >= 0)
		r = sd_bus_message_append(m, "(sv)", "CollectMode", "s",
		    "inactive-or-failed");
	if (r >= 0 && memory_max_mib > 0)
		r = sd_bus_message_append(m, "(sv)", "MemoryMax", "t",
		    memory_max_mib << 20);
	if (r >= 0 && cpu_quota > 0)
		r = sd_bus_message_append(m, "(sv)", "CPUQuotaPerSecUSec", "t",
		    (uint64_t)cpu_quota * 10000);
	if (r >= 0 && tasks_max > 0)
		r = sd_bus_message_append(m, "(sv)", "TasksMax", "t",
		    (uint64_t)tasks_max);
	if (r >= 0)
		r = sd_bus_message_close_container(m);
	if (r >= 0)
		r = sd_bus_message_append(m, "a(sa(sv))", 0);
	if (r >= 0)
		r = sd_bus_call(bus, m, 0, &e, &reply);
	if (r < 0)
		cap_err_set(err, -r, E_INTERNAL, "systemd would not make %s: "
		    "%s", unit, e.message != NULL ? e.message : strerror(-r));
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	sd_bus_message_unref(m);
	sd_bus_flush_close_unref(bus);
	return r < 0 ? r : 0;
#else
	return cap_err_set(err, ENOTSUP, E_UNAVAILABLE, "no systemd here");
#endif
}
