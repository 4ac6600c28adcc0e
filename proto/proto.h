/*
 * proto.h — every name and limit that crosses a socket, in one place.
 *
 * capsuled, capsule and capsule-agent all include this header; nobody spells
 * an op, a field or an error code as a literal anywhere else.
 *
 * Don't forget to bump CAPSULE_PROTOCOL when the control protocol changes
 * incompatibly, and CHAN_VERSION (proto/chan.h) when the agent channel does.
 */
#ifndef CAPSULE_PROTO_H
#define CAPSULE_PROTO_H

#define CAPSULE_VERSION		"0.1.0"
#define CAPSULE_PROTOCOL	1

/* Limits of the control socket and of exec streams. */
#define PROTO_MAX_LINE		(1024 * 1024)	/* one JSON line, newline excluded */
#define PROTO_MAX_ARGS		4096
#define PROTO_MAX_ENV		4096

/* ---- control socket: ops ---- */
#define OP_PING			"Ping"
#define OP_START_VM		"StartVM"
#define OP_STOP_VM		"StopVM"
#define OP_PAUSE_VM		"PauseVM"
#define OP_RESUME_VM		"ResumeVM"
#define OP_LIST_VMS		"ListVMs"
#define OP_EVENTS		"Events"	/* a stream of lifecycle events */
#define OP_DOCTOR		"Doctor"	/* host checks, capabilities */
#define OP_IMPORT_IMAGE		"ImportImage"	/* docs/images.md */
#define OP_PULL_IMAGE		"PullImage"
#define OP_LIST_IMAGES		"ListImages"
#define OP_INSPECT_IMAGE	"InspectImage"
#define OP_REMOVE_IMAGE		"RemoveImage"
#define OP_PRUNE_IMAGES		"PruneImages"
#define OP_CREATE_SANDBOX	"CreateSandbox"
#define OP_LIST_SANDBOXES	"ListSandboxes"
#define OP_SET_POOL		"SetPool"
#define OP_FORK_VM		"ForkVM"
#define OP_SNAPSHOT_VM		"SnapshotVM"
#define OP_LIST_SNAPSHOTS	"ListSnapshots"
#define OP_REMOVE_SNAPSHOT	"RemoveSnapshot"
#define OP_LIST_POOLS		"ListPools"
#define OP_REMOVE_SANDBOX	"RemoveSandbox"

/* ---- control socket: JSON keys (J_*) ---- */
#define J_OP			"op"
#define J_ID			"id"
#define J_OK			"ok"
#define J_ERROR			"error"
#define J_CODE			"code"

/* Ping reply */
#define J_VERSION		"version"
#define J_PROTOCOL		"protocol"
#define J_ACCEL			"accel"
#define J_BACKENDS		"backends"
#define J_BACKEND		"backend"
#define J_HYPERVISOR		"hypervisor"	/* e.g. "QEMU 7.2.22" */
#define J_ACCEL_NOTE		"accel_note"	/* why not a better accel */

/* StartVM request: buildkite/cleanroom helper names, then capsule's own. */
#define J_KERNEL_PATH		"kernel_path"
#define J_ROOTFS_PATH		"rootfs_path"
#define J_BOOT_ARGS		"boot_args"
#define J_VCPUS			"vcpus"
#define J_MEMORY_MIB		"memory_mib"
#define J_GUEST_PORT		"guest_port"
#define J_LAUNCH_SECONDS	"launch_seconds"
/* capsule extension: the size of the VM's writable disk, MiB */
#define J_DISK_SIZE_MIB		"disk_size_mib"
/* capsule extension: named sandboxes (StartVM "sandbox": a name or id) */
#define J_SANDBOX		"sandbox"
#define J_SANDBOXES		"sandboxes"
#define J_DISK_USED		"disk_used_bytes"
#define J_FORCE			"force"		/* RemoveSandbox */
/* capsule extension: stop the VM after this long without an exec, a copy
 * or a forwarded connection (seconds; 0 or absent: never) */
#define J_IDLE_TIMEOUT		"idle_timeout_seconds"
#define J_RUN_DIR		"run_dir"
#define J_PROXY_SOCKET_PATH	"proxy_socket_path"
#define J_CONSOLE_LOG_PATH	"console_log_path"
#define J_INITRD_PATH		"initrd_path"		/* capsule extension */
#define J_STOP_ON_DISCONNECT	"stop_on_disconnect"	/* capsule extension */
#define J_POOLED		"pooled"	/* ListVMs: in a warm pool */
#define J_POOLS			"pools"
#define J_POOL			"pool"
#define J_POOL_ID		"pool_id"
#define J_READY			"ready"
#define J_STARTING		"starting"
#define J_HANDED_OUT		"handed_out"
#define J_REQUEST		"request"
#define J_CONFIGURED		"configured"	/* ListPools: from capsuled.conf */
/* capsule extension: raw virtio-serial ports; a list of names in StartVM,
 * an object name -> host socket path in replies */
#define J_SERIAL_PORTS		"serial_ports"
/* capsule extension: the VM's network (docs/network.md): "none", "nat",
 * or {"mode":"allow","allow":[ENTRY, ...]}; replies give the object. */
#define J_NETWORK		"network"
#define J_NET_MODE		"mode"
#define J_NET_ALLOW		"allow"
#define NETMODE_NONE		"none"
#define NETMODE_ALLOW		"allow"
#define NETMODE_NAT		"nat"
/* capsule extension: ["[HOSTADDR:]HOSTPORT:GUESTPORT", ...] */
#define J_PUBLISH		"publish"
/* capsule extension: shared folders, [{"host", "guest", "read_only"}] */
#define J_VOLUMES		"volumes"
#define J_HOST			"host"
#define J_GUEST			"guest"
#define J_READ_ONLY		"read_only"
/* capsule extension: boot this image (a name or its digest) instead of
 * rootfs_path; ListVMs gives its digest */
#define J_IMAGE			"image"
/* capsule extension: the guest's CPU architecture, "x86_64" or "aarch64"
 * (default: the host's); ListVMs says it */
#define J_ARCH			"arch"
/* ListVMs: what an "allow" VM's egress did */
#define J_EGRESS		"egress"
#define J_EG_DNS_ALLOWED	"dns_allowed"
#define J_EG_DNS_DENIED		"dns_denied"
#define J_EG_ALLOWED		"connections_allowed"
#define J_EG_DENIED		"connections_denied"
#define J_EG_FAILED		"connections_failed"
#define J_EG_OPEN		"connections_open"
#define J_EG_BYTES_OUT		"bytes_out"
#define J_EG_BYTES_IN		"bytes_in"

/* StartVM reply, StopVM request, ListVMs entries */
#define J_VM_ID			"vm_id"
#define J_TIMING_MS		"timing_ms"
#define J_VMS			"vms"
#define J_STATE			"state"
#define J_PID			"pid"
#define J_CREATED_AT		"created_at"
#define J_OWNER_UID		"owner_uid"
#define J_EXIT_STATUS		"exit_status"
#define J_STOPPED		"stopped"
#define J_ALL			"all"		/* StopVM: every VM it may see */

/* Images: requests, replies, progress lines before the reply */
#define J_PATH			"path"		/* ImportImage */
#define J_REF			"ref"		/* PullImage */
#define J_NAME			"name"
#define J_TLS_VERIFY		"tls_verify"
#define J_PROGRESS		"progress"	/* request: bool; line: object */
#define J_STAGE			"stage"
#define J_MESSAGE		"message"
#define J_IMAGES		"images"
#define J_DIGEST		"digest"
#define J_SIZE			"size"
#define J_COUNT			"count"		/* ForkVM: copies */
#define J_SNAPSHOT		"snapshot"	/* a name (StartVM: from it) */
#define J_SNAPSHOTS		"snapshots"
#define J_BYTES			"bytes"		/* on the host's disk */
#define J_CONFIG		"config"
#define J_REMOVED		"removed"
#define J_NAMES			"names"
#define J_DIFF_IDS		"diff_ids"	/* image.json */
/* config members, from the image's own (OCI) config */
#define J_ENV			"env"
#define J_WORKING_DIR		"working_dir"
#define J_USER			"user"
#define J_ENTRYPOINT		"entrypoint"
#define J_CMD			"cmd"
/* progress stages */
#define STAGE_FETCH		"fetch"		/* skopeo, as the caller */
#define STAGE_VERIFY		"verify"	/* copying it in, checking */
#define STAGE_UNPACK		"unpack"	/* umoci: layers, whiteouts */
#define STAGE_MKFS		"mkfs"		/* the root file system image */
#define PROTO_MAX_IMAGE_NAME	128

/* timing_ms members */
#define T_SPAWN			"spawn"		/* QEMU started */
#define T_GUEST_BOOT		"guest_boot"	/* guest clock at agent ready */
#define T_START			"start"		/* "cold" or "restored" */
#define T_START_NOTE		"start_note"	/* why cold; template taken */
#define T_VM_READY		"vm_ready"	/* request to agent ready */

/* accel values */
#define ACCEL_KVM		"kvm"
#define ACCEL_TCG		"tcg"
#define ACCEL_HVF		"hvf"

/* Events: {"event":..., "seq":N, "time":..., "vm_id":..., ...} */
#define EV_EVENT		"event"
#define EV_SEQ			"seq"
#define EV_TIME			"time"
#define EV_OWNER_UID		"owner_uid"
#define EV_CREATED		"created"	/* StartVM accepted */
#define EV_STARTED		"started"	/* its hypervisor runs */
#define EV_READY		"ready"		/* its agent answered */
#define EV_ADOPTED		"adopted"	/* taken over after a restart */
#define EV_STOPPING		"stopping"
#define EV_STOPPED		"stopped"	/* gone, or powered off */
#define EV_CRASHED		"crashed"
#define EV_START_FAILED		"start_failed"
#define EV_UNRESPONSIVE		"unresponsive"
#define EV_RESPONSIVE		"responsive"
#define EV_IDLE			"idle"		/* idle_timeout: stopping */
#define EV_PAUSED		"paused"	/* PauseVM */
#define EV_RESUMED		"resumed"	/* ResumeVM */
#define EV_EXEC_STARTED		"exec_started"
#define EV_EXEC_ENDED		"exec_ended"
#define EV_OVERFLOW		"overflow"	/* subscriber too slow */
#define EV_EXEC			"exec"		/* exec number within its VM */
#define EV_ARGV0		"argv0"

/* Doctor reply */
#define J_CHECKS		"checks"
#define J_CHECK_NAME		"name"
#define J_CHECK_STATUS		"status"	/* pass, warn, fail */
#define J_CHECK_MESSAGE		"message"
#define J_CAPABILITIES		"capabilities"
#define CHECK_PASS		"pass"
#define CHECK_WARN		"warn"
#define CHECK_FAIL		"fail"
/* Capability keys, as cleanroom names them. */
#define CAP_EXEC_STREAMING	"exec.streaming"
#define CAP_SANDBOX_SNAPSHOT	"sandbox.snapshot"
#define CAP_SANDBOX_PERSISTENT	"sandbox.persistent"
#define CAP_FILE_DOWNLOAD	"sandbox.file_download"
#define CAP_FILE_UPLOAD		"sandbox.file_upload"
#define CAP_NET_DEFAULT_DENY	"network.default_deny"
#define CAP_NET_ALLOWLIST	"network.allowlist_egress"
#define CAP_NET_GUEST_IF	"network.guest_interface"
#define CAP_DNS_CONTROL		"dns_control_or_equivalent"

/* VM states as reported by ListVMs */
#define VMSTATE_STARTING	"starting"
#define VMSTATE_RUNNING		"running"
#define VMSTATE_UNRESPONSIVE	"unresponsive"
#define VMSTATE_PAUSED		"paused"
#define VMSTATE_STOPPING	"stopping"
#define VMSTATE_STOPPED		"stopped"
#define VMSTATE_CRASHED		"crashed"

/* ---- control socket: error codes (stable machine words) ---- */
#define E_INVALID_JSON		"invalid_json"
#define E_INVALID_ARGUMENT	"invalid_argument"
#define E_UNSUPPORTED_OP	"unsupported_op"
#define E_TOO_LARGE		"too_large"
#define E_NOT_FOUND		"not_found"
#define E_CONFLICT		"conflict"
#define E_PERMISSION_DENIED	"permission_denied"
#define E_LIMIT			"limit_exceeded"
#define E_UNAVAILABLE		"unavailable"
#define E_TIMEOUT		"timeout"
#define E_VM_FAILED		"vm_failed"
#define E_INTERNAL		"internal"

/* ---- exec stream (cleanroom vsockexec JSON lines) ---- */
#define X_COMMAND		"command"
#define X_DIR			"dir"
#define X_ENV			"env"
#define X_TTY			"tty"
#define X_TYPE			"type"
#define X_DATA			"data"
#define X_COLS			"cols"
#define X_ROWS			"rows"
#define X_EXIT_CODE		"exit_code"
#define X_ERROR			"error"
#define X_SIGNAL		"signal"	/* capsule extension */
/* capsule extensions of the request (ignored by cleanroom's agent) */
#define X_USER			"user"		/* "uid[:gid]" or "name[:group]" */
#define X_TIMEOUT		"timeout"	/* seconds; exit 124 when over */
#define X_DETACH		"detach"	/* true: start, answer, go on */
#define X_STDIN_CREDIT		"stdin_credit"	/* true: "credit" lines */
#define X_COPY			"copy"		/* "in" or "out": capsule cp */
#define X_PATH			"path"		/* the guest path of a copy */
/* cleanroom: base64 bytes for the guest's entropy pool, before the
 * command runs */
#define X_ENTROPY_SEED		"entropy_seed"
#define PROTO_MAX_SEED		512		/* bytes, decoded */
/* capsule extensions of the output */
#define X_BYTES			"bytes"		/* credit line */
#define X_PID			"pid"		/* exit line of a detached exec */
#define X_LOG_PATH		"log_path"	/* ... and where its output goes */
#define XC_IN			"in"
#define XC_OUT			"out"
#define PROTO_MAX_TIMEOUT	2592000		/* seconds: 30 days */

#define XT_STDIN		"stdin"
#define XT_STDOUT		"stdout"
#define XT_STDERR		"stderr"
#define XT_EOF			"eof"
#define XT_RESIZE		"resize"
#define XT_EXIT			"exit"
#define XT_SIGNAL		"signal"	/* capsule extension */
#define XT_CREDIT		"credit"	/* capsule extension */

/* Exit codes for commands that never ran, as coreutils and docker use them. */
#define EXIT_TIMEOUT		124	/* --timeout killed it, as timeout(1) */
#define EXIT_CAPSULE_ERROR	125	/* capsule could not run it */
#define EXIT_CANNOT_EXEC	126	/* found but not executable, bad dir */
#define EXIT_NOT_FOUND		127	/* no such command */

/* ---- daemon <-> agent ---- */
#define AGENT_PORT_NAME		"org.capsule.agent"
/* The guest's two disks, told apart by their virtio serial: the base
 * image (read-only) and the VM's writable disk, which the agent mounts as
 * an overlay's lower and upper layers. */
#define DISK_SERIAL_BASE	"capsule-base"
#define DISK_SERIAL_DISK	"capsule-disk"
#define AGENT_DEFAULT_GUEST_PORT 10700	/* cleanroom's default vsock port */

#endif /* CAPSULE_PROTO_H */
