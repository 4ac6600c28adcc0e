/*
 * capsule-vz.m — one Linux VM on Apple's Virtualization.framework (VZ),
 * for hv/vz.c. Objective-C with ARC; macOS 13 or later.
 *
 * capsuled starts one capsule-vz per VM, with these descriptors and no
 * others (hv/vz.c, VZ_FD_*; keep the two in step):
 *
 *   0       /dev/null
 *   1, 2    capsuled's log of the hypervisor: every error goes here too
 *   3       control, a stream socket. capsule-vz reads commands, one a
 *           line: "request-stop", "stop", "pause", "resume". It writes
 *           status, one JSON object a line:
 *             {"event":"started"}
 *             {"event":"paused"}   {"event":"resumed"}
 *             {"event":"stopped","by":"guest"}   the guest powered off,
 *                                  rebooted or panicked: VZ does not say
 *             {"event":"stopped","by":"host"}    a "stop" did it
 *             {"event":"warning","message":TEXT}
 *             {"event":"error","message":TEXT}   and capsule-vz exits 1
 *           TEXT is VZ's own words where VZ had any. EOF on it means
 *           capsuled has gone: the VM is stopped and capsule-vz exits.
 *   4       the agent's port (named AGENT_PORT_NAME), a stream socket
 *   5       the guest's console, hvc0: the write end of a pipe
 *   6, 7    the kernel (an uncompressed arm64 Image; a bzImage on an
 *           Intel Mac) and the initrd
 *   8, 9    the base image (read-only) and the VM's disk: raw files
 *   10...   a listening socket for each --port, then a directory for
 *           each --share-ro / --share-rw, in argument order
 *
 * and this argv:
 *   capsule-vz --cpus N --memory-mib M --cmdline TEXT [--nat]
 *       [--port NAME]... [--share-ro TAG | --share-rw TAG]...
 *       [--rosetta TAG]
 *   capsule-vz --probe      says whether this Mac can run VMs, and exits
 *
 * VZ takes files as URLs and does its work in a sandboxed XPC service of
 * its own (com.apple.Virtualization.VirtualMachine), so a /dev/fd/N URL
 * could name that service's descriptor N rather than ours, and
 * VZSharedDirectory wants "an existing directory path". capsule-vz never
 * opens a path itself: it names each file by the path its descriptor has
 * now (F_GETPATH), once it has checked that this path still leads to that
 * very file (same device and inode, not a symbolic link).
 *
 * The VM lives as long as this process: VZ ends a VM whose client has
 * gone. One serial queue runs everything VZ sees; each extra port has a
 * thread of its own that relays between capsuled's listening socket and
 * VZ (which only takes a descriptor it keeps for the VM's life).
 */
#import <Foundation/Foundation.h>
#import <Virtualization/Virtualization.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/param.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"

#define CVZ_FD_CONTROL	3
#define CVZ_FD_AGENT	4
#define CVZ_FD_CONSOLE	5
#define CVZ_FD_KERNEL	6
#define CVZ_FD_INITRD	7
#define CVZ_FD_BASE	8
#define CVZ_FD_DISK	9
#define CVZ_FD_PORT0	10	/* then the shares */
#define CVZ_MAX_PORTS	8	/* HV_MAX_SERIAL_PORTS */
#define CVZ_MAX_SHARES	8	/* HV_MAX_SHARES */
#define CVZ_MAX_NAME	127	/* a port's name, in bytes */
#define CVZ_MAX_TAG	35	/* VZ: a tag is under 36 bytes */
#define CVZ_MAX_CMDLINE	2047	/* the kernel's COMMAND_LINE_SIZE, less NUL */
#define CVZ_MAX_CMD	64	/* a control line */
#define CVZ_MAX_TEXT	500	/* UTF-16 units of a message: a status line
				 * stays under hv/vz.c's VZ_LINE_MAX even
				 * with every character escaped */

static struct {
	unsigned	 cpus;
	uint64_t	 memory_mib;
	const char	*cmdline;
	int		 nat;
	const char	*ports[CVZ_MAX_PORTS];
	unsigned	 nports;
	const char	*shares[CVZ_MAX_SHARES];
	int		 share_ro[CVZ_MAX_SHARES];
	unsigned	 nshares;
	const char	*rosetta;
} cvz;

/* A port's relay: capsuled's listening socket and our end of VZ's. */
struct cvz_relay {
	int	listen;
	int	inner;
};

@interface CVZDelegate : NSObject <VZVirtualMachineDelegate>
@end

static dispatch_queue_t		 cvz_queue;	/* VZ's, and ours */
static VZVirtualMachine		*cvz_vm;
static CVZDelegate		*cvz_delegate;	/* VZ holds it weakly */
static dispatch_source_t	 cvz_control;
static int			 cvz_ending;	/* stopped or stopping */

/* ---- status out ---- */

static void
cvz_write(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, p, len)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;		/* capsuled has gone: nobody to tell */
		p += n;
		len -= (size_t)n;
	}
}

static void
cvz_status(NSString *event, NSString *key, NSString *value)
{
	NSMutableDictionary *d = [NSMutableDictionary dictionary];
	NSMutableData *line;
	NSData *json;

	/* Cut at a character boundary: VZ's words are not ours to bound. */
	if (value.length > CVZ_MAX_TEXT)
		value = [[value substringWithRange:[value
		    rangeOfComposedCharacterSequencesForRange:NSMakeRange(0,
		    CVZ_MAX_TEXT - 3)]] stringByAppendingString:@"..."];
	d[@"event"] = event;
	if (key != nil && value != nil)
		d[key] = value;
	/* NSJSONSerialization escapes control characters: one line. */
	json = [NSJSONSerialization dataWithJSONObject:d options:0 error:NULL];
	if (json == nil)
		return;
	line = [json mutableCopy];
	[line appendBytes:"\n" length:1];
	cvz_write(CVZ_FD_CONTROL, line.bytes, line.length);
}

/* VZ's words: an error's description, then its reasons and causes. */
static NSString *
cvz_text(NSError *e)
{
	NSMutableString *s = [NSMutableString string];

	for (int depth = 0; e != nil && depth < 4; depth++) {
		NSString *parts[2] = { e.localizedDescription,
		    e.localizedFailureReason };
		id next = e.userInfo[NSUnderlyingErrorKey];

		for (int i = 0; i < 2; i++) {
			if (parts[i].length == 0 ||
			    [s rangeOfString:parts[i]].location != NSNotFound)
				continue;
			if (s.length > 0)
				[s appendString:@": "];
			[s appendString:parts[i]];
		}
		e = [next isKindOfClass:[NSError class]] ? next : nil;
	}
	return s.length > 0 ? s : @"unknown error";
}

/* To capsuled's log (one line) and, as event, to capsuled itself. */
static void
cvz_say(NSString *event, NSString *what)
{
	NSString *flat = [[what componentsSeparatedByCharactersInSet:
	    [NSCharacterSet newlineCharacterSet]]
	    componentsJoinedByString:@" "];

	dprintf(2, "capsule-vz: %s\n", flat.UTF8String);
	if (event != nil)
		cvz_status(event, @"message", what);
}

static void
cvz_warn(NSString *what)
{
	cvz_say(@"warning", what);
}

static void __attribute__((noreturn))
cvz_die(NSString *what)
{
	cvz_say(@"error", what);
	_exit(1);
}

static void __attribute__((noreturn))
cvz_die_vz(NSString *what, NSError *e)
{
	cvz_die([NSString stringWithFormat:@"%@: %@", what, cvz_text(e)]);
}

/* ---- arguments and files ---- */

/* Printable ASCII without spaces, 1 to max bytes. */
static int
cvz_word(const char *s, size_t max)
{
	size_t n = strlen(s);

	while (*s > ' ' && *s <= '~')
		s++;
	return n > 0 && n <= max && *s == '\0';
}

/* 1 to max, in decimal; 0 if it is not that. */
static unsigned long long
cvz_number(const char *s, unsigned long long max)
{
	unsigned long long v;
	char *end;

	errno = 0;
	v = strtoull(s, &end, 10);
	return s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 &&
	    v <= max ? v : 0;
}

static void
cvz_args(int argc, char *argv[])
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--nat") == 0) {
			cvz.nat = 1;
			continue;
		}
		if (v == NULL)
			cvz_die([NSString stringWithFormat:@"%.40s needs a "
			    "value", a]);
		i++;
		if (strcmp(a, "--cpus") == 0 &&
		    (cvz.cpus = (unsigned)cvz_number(v, 1024)) > 0)
			;
		else if (strcmp(a, "--memory-mib") == 0 &&
		    (cvz.memory_mib = cvz_number(v, 1ULL << 30)) > 0)
			;
		else if (strcmp(a, "--cmdline") == 0 &&
		    strlen(v) <= CVZ_MAX_CMDLINE)
			cvz.cmdline = v;
		else if (strcmp(a, "--port") == 0 &&
		    cvz.nports < CVZ_MAX_PORTS && cvz_word(v, CVZ_MAX_NAME))
			cvz.ports[cvz.nports++] = v;
		else if ((strcmp(a, "--share-ro") == 0 ||
		    strcmp(a, "--share-rw") == 0) &&
		    cvz.nshares < CVZ_MAX_SHARES && cvz_word(v, CVZ_MAX_TAG)) {
			cvz.share_ro[cvz.nshares] =
			    strcmp(a, "--share-ro") == 0;
			cvz.shares[cvz.nshares++] = v;
		} else if (strcmp(a, "--rosetta") == 0 &&
		    cvz_word(v, CVZ_MAX_TAG))
			cvz.rosetta = v;
		else
			cvz_die([NSString stringWithFormat:@"bad argument: "
			    "%.40s %.80s", a, v]);
	}
	if (cvz.cpus == 0 || cvz.memory_mib == 0 || cvz.cmdline == NULL)
		cvz_die(@"usage: capsule-vz --cpus N --memory-mib M "
		    "--cmdline TEXT [--nat] [--port NAME]... "
		    "[--share-ro TAG | --share-rw TAG]... [--rosetta TAG]");
	for (int fd = CVZ_FD_CONTROL; fd < CVZ_FD_PORT0 + (int)(cvz.nports +
	    cvz.nshares); fd++)
		if (fcntl(fd, F_GETFD) < 0)
			cvz_die([NSString stringWithFormat:@"descriptor %d is "
			    "not open (see the top of capsule-vz.m)", fd]);
}

/* The path descriptor fd has now, if it still leads to that very file. */
static NSURL *
cvz_url(int fd, int dir, const char *what)
{
	char path[MAXPATHLEN];
	struct stat a, b;

	if (fstat(fd, &a) < 0 || fcntl(fd, F_GETPATH, path) < 0)
		cvz_die([NSString stringWithFormat:@"%s (descriptor %d): %s",
		    what, fd, strerror(errno)]);
	if (dir ? !S_ISDIR(a.st_mode) : !S_ISREG(a.st_mode))
		cvz_die([NSString stringWithFormat:@"%s (descriptor %d) is not "
		    "a %s", what, fd, dir ? "directory" : "regular file"]);
	if (lstat(path, &b) < 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino)
		cvz_die([NSString stringWithFormat:@"%s is no longer at %s, "
		    "where VZ would look for it", what, path]);
	return [NSURL fileURLWithFileSystemRepresentation:path
	    isDirectory:dir relativeToURL:nil];		/* macOS 10.11 */
}

static NSFileHandle *
cvz_handle(int fd)
{
	/* Not closeOnDealloc: the descriptor is ours for the VM's life. */
	return [[NSFileHandle alloc] initWithFileDescriptor:fd];
}

/* VZ reads what the guest gets from `in`, writes what it sends to `out`;
 * either may be -1. */
static VZFileHandleSerialPortAttachment *
cvz_attach(int in, int out)
{
	NSFileHandle *r = in >= 0 ? cvz_handle(in) : nil;
	NSFileHandle *w = out == in ? r : out >= 0 ? cvz_handle(out) : nil;

	/* macOS 11 */
	return [[VZFileHandleSerialPortAttachment alloc]
	    initWithFileHandleForReading:r fileHandleForWriting:w];
}

/* ---- extra ports ---- */

static int
cvz_copy(int from, int to)
{
	char buf[16384];
	ssize_t n;

	while ((n = read(from, buf, sizeof(buf))) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return -1;
	if (to >= 0)
		cvz_write(to, buf, (size_t)n);
	return 0;
}

/* One connection at a time, as QEMU serves a port: while nobody is
 * connected, what the guest writes is dropped. */
static void *
cvz_relay(void *arg)
{
	struct cvz_relay *r = arg;
	struct pollfd p[2];
	int conn = -1, one = 1;

	for (;;) {
		p[0].fd = r->inner;
		p[1].fd = conn >= 0 ? conn : r->listen;
		p[0].events = p[1].events = POLLIN;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		/* conn is still what p[1] polled: only the second half below
		 * changes it. */
		if (p[0].revents != 0 && cvz_copy(r->inner, conn) < 0)
			break;		/* VZ's end closed: the VM is going */
		if (p[1].revents == 0)
			continue;
		if (conn < 0) {
			if ((conn = accept(r->listen, NULL, NULL)) < 0)
				continue;	/* gone before we took it */
			/* BSD sockets inherit O_NONBLOCK from the listener. */
			fcntl(conn, F_SETFL, 0);
			fcntl(conn, F_SETFD, FD_CLOEXEC);
			setsockopt(conn, SOL_SOCKET, SO_NOSIGPIPE, &one,
			    sizeof(one));
		} else if (cvz_copy(conn, r->inner) < 0) {
			close(conn);
			conn = -1;
		}
	}
	if (conn >= 0)
		close(conn);
	return NULL;
}

static VZFileHandleSerialPortAttachment *
cvz_port(int listen_fd)
{
	struct cvz_relay *r;
	pthread_t t;
	int sv[2];

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		cvz_die([NSString stringWithFormat:@"port relay: %s",
		    strerror(errno)]);
	fcntl(sv[0], F_SETFD, FD_CLOEXEC);
	fcntl(sv[1], F_SETFD, FD_CLOEXEC);
	r->listen = listen_fd;
	r->inner = sv[0];
	/* Non-blocking: poll() may see a connection that is gone by the
	 * time accept() runs. */
	fcntl(listen_fd, F_SETFL, O_NONBLOCK);
	if (pthread_create(&t, NULL, cvz_relay, r) != 0)
		cvz_die(@"port relay: cannot start a thread");
	pthread_detach(t);
	return cvz_attach(sv[1], sv[1]);
}

/* ---- the configuration ---- */

static VZVirtioBlockDeviceConfiguration *
cvz_disk(int fd, BOOL ro, const char *serial, const char *what)
{
	VZDiskImageStorageDeviceAttachment *a;
	VZVirtioBlockDeviceConfiguration *d;
	NSString *ident = @(serial);
	NSError *e = nil;

	/* macOS 11. Raw images only: VZ has no qcow2. */
	a = [[VZDiskImageStorageDeviceAttachment alloc]
	    initWithURL:cvz_url(fd, 0, what) readOnly:ro error:&e];
	if (a == nil)
		cvz_die_vz([NSString stringWithFormat:@"the %s", what], e);
	d = [[VZVirtioBlockDeviceConfiguration alloc] initWithAttachment:a];
	/* macOS 12.3: the serial the guest reads (VIRTIO_BLK_T_GET_ID),
	 * by which the agent tells the disks apart. */
	if (![VZVirtioBlockDeviceConfiguration
	    validateBlockDeviceIdentifier:ident error:&e])
		cvz_die_vz(@"disk serial", e);
	d.blockDeviceIdentifier = ident;
	return d;
}

static VZVirtioFileSystemDeviceConfiguration *
cvz_fs(const char *tag)
{
	NSString *t = @(tag);
	NSError *e = nil;

	/* macOS 12 */
	if (![VZVirtioFileSystemDeviceConfiguration validateTag:t error:&e])
		cvz_die_vz([NSString stringWithFormat:@"share tag %s", tag], e);
	return [[VZVirtioFileSystemDeviceConfiguration alloc] initWithTag:t];
}

/* Rosetta exists for Apple silicon only: so does its class (the SDK
 * declares it for arm64 alone). */
static VZDirectoryShare *
cvz_rosetta(void)
{
#if defined(__arm64__)
	NSError *e = nil;
	VZLinuxRosettaDirectoryShare *s;

	/* macOS 13. Installing it would prompt a person: a daemon only
	 * uses it if it is there. */
	if ([VZLinuxRosettaDirectoryShare availability] !=
	    VZLinuxRosettaAvailabilityInstalled)
		cvz_die(@"Rosetta for Linux is not installed (or not "
		    "available) on this Mac: run `softwareupdate "
		    "--install-rosetta`, or do without --rosetta");
	s = [[VZLinuxRosettaDirectoryShare alloc] initWithError:&e];
	if (s == nil)
		cvz_die_vz(@"Rosetta", e);
	return s;
#else
	cvz_die(@"Rosetta for Linux needs a Mac with Apple silicon");
#endif
}

static VZVirtualMachineConfiguration *
cvz_config(void)
{
	VZVirtualMachineConfiguration *c;
	VZLinuxBootLoader *boot;
	VZVirtioConsoleDeviceSerialPortConfiguration *hvc;
	VZVirtioConsoleDeviceConfiguration *console;
	VZVirtioConsolePortConfiguration *port;
	VZVirtioNetworkDeviceConfiguration *nic;
	VZVirtioFileSystemDeviceConfiguration *fs;
	NSMutableArray *shares = [NSMutableArray array];
	NSString *cmdline = @(cvz.cmdline);
	unsigned i;

	if (cmdline == nil)
		cvz_die(@"the kernel command line is not UTF-8");
	/* macOS 11; the platform is VZGenericPlatformConfiguration by
	 * default (macOS 12), which VZLinuxBootLoader needs. */
	c = [[VZVirtualMachineConfiguration alloc] init];
	c.CPUCount = cvz.cpus;			/* macOS 11 */
	c.memorySize = cvz.memory_mib << 20;	/* macOS 11 */

	boot = [[VZLinuxBootLoader alloc]	/* macOS 11 */
	    initWithKernelURL:cvz_url(CVZ_FD_KERNEL, 0, "kernel")];
	boot.initialRamdiskURL = cvz_url(CVZ_FD_INITRD, 0, "initrd");
	boot.commandLine = cmdline;
	c.bootLoader = boot;

	c.storageDevices = @[			/* macOS 11 */
	    cvz_disk(CVZ_FD_BASE, YES, DISK_SERIAL_BASE, "base image"),
	    cvz_disk(CVZ_FD_DISK, NO, DISK_SERIAL_DISK, "VM's disk") ];

	/* hvc0, the kernel's console (console=hvc0): macOS 11. Write-only,
	 * as capsuled reads the console and never types into it. */
	hvc = [[VZVirtioConsoleDeviceSerialPortConfiguration alloc] init];
	hvc.attachment = cvz_attach(-1, CVZ_FD_CONSOLE);
	c.serialPorts = @[ hvc ];

	/* Named ports (the guest finds them in /sys/class/virtio-ports):
	 * the agent's, then the extra ones. macOS 13. */
	console = [[VZVirtioConsoleDeviceConfiguration alloc] init];
	port = [[VZVirtioConsolePortConfiguration alloc] init];
	port.name = @(AGENT_PORT_NAME);
	port.attachment = cvz_attach(CVZ_FD_AGENT, CVZ_FD_AGENT);
	[console.ports setObject:port atIndexedSubscript:0];
	for (i = 0; i < cvz.nports; i++) {
		port = [[VZVirtioConsolePortConfiguration alloc] init];
		port.name = @(cvz.ports[i]);
		port.attachment = cvz_port(CVZ_FD_PORT0 + (int)i);
		[console.ports setObject:port atIndexedSubscript:1 + i];
	}
	c.consoleDevices = @[ console ];

	c.entropyDevices = @[			/* macOS 11 */
	    [[VZVirtioEntropyDeviceConfiguration alloc] init] ];
	c.memoryBalloonDevices = @[		/* macOS 11 */
	    [[VZVirtioTraditionalMemoryBalloonDeviceConfiguration alloc]
	    init] ];

	if (cvz.nat) {
		/* macOS 11. VZ's own NAT (vmnet's shared mode: DHCP, and
		 * by default 192.168.64.0/24). The MAC address is random
		 * and locally administered unless set. No entitlement
		 * beyond com.apple.security.virtualization is needed. */
		nic = [[VZVirtioNetworkDeviceConfiguration alloc] init];
		nic.attachment = [[VZNATNetworkDeviceAttachment alloc] init];
		c.networkDevices = @[ nic ];
	}

	for (i = 0; i < cvz.nshares; i++) {
		/* macOS 12. Read-only is VZ's to enforce, on the host. */
		VZSharedDirectory *dir = [[VZSharedDirectory alloc]
		    initWithURL:cvz_url(CVZ_FD_PORT0 + (int)(cvz.nports + i),
		    1, "shared folder") readOnly:cvz.share_ro[i]];

		fs = cvz_fs(cvz.shares[i]);
		fs.share = [[VZSingleDirectoryShare alloc]
		    initWithDirectory:dir];
		[shares addObject:fs];
	}
	if (cvz.rosetta != NULL) {
		fs = cvz_fs(cvz.rosetta);
		fs.share = cvz_rosetta();
		[shares addObject:fs];
	}
	c.directorySharingDevices = shares;	/* macOS 12 */
	return c;
}

/* ---- running it (everything below runs on cvz_queue) ---- */

static void __attribute__((noreturn))
cvz_stopped(NSString *by)
{
	cvz_status(@"stopped", @"by", by);
	_exit(0);
}

/* Ends the VM now (VZ: "a destructive operation"), and with it us. */
static void
cvz_stop(void)
{
	if (cvz_ending)
		return;
	cvz_ending = 1;
	if (!cvz_vm.canStop)			/* macOS 12 */
		cvz_stopped(@"host");	/* our exit ends what there is */
	[cvz_vm stopWithCompletionHandler:^(NSError *e) {	/* macOS 12 */
		if (e != nil)
			cvz_die_vz(@"VZ could not stop the VM", e);
		cvz_stopped(@"host");
	}];
}

static void
cvz_done(NSString *event, NSError *e)
{
	if (e != nil)
		cvz_warn(cvz_text(e));
	else
		cvz_status(event, nil, nil);
}

static void
cvz_command(const char *cmd)
{
	NSError *e = nil;

	if (strcmp(cmd, "stop") == 0) {
		cvz_stop();
	} else if (strcmp(cmd, "request-stop") == 0) {
		/* macOS 11: asks the guest; only a guest that handles the
		 * power button will act on it. */
		if (!cvz_vm.canRequestStop ||
		    ![cvz_vm requestStopWithError:&e])
			cvz_warn(e != nil ? cvz_text(e) :
			    @"VZ cannot ask the guest to stop now");
	} else if (strcmp(cmd, "pause") == 0 && !cvz_ending) {
		if (cvz_vm.canPause)		/* macOS 11 */
			[cvz_vm pauseWithCompletionHandler:^(NSError *pe) {
				cvz_done(@"paused", pe);
			}];
		else
			cvz_warn(@"VZ cannot pause the VM now");
	} else if (strcmp(cmd, "resume") == 0 && !cvz_ending) {
		if (cvz_vm.canResume)		/* macOS 11 */
			[cvz_vm resumeWithCompletionHandler:^(NSError *re) {
				cvz_done(@"resumed", re);
			}];
		else
			cvz_warn(@"VZ cannot resume the VM now");
	} else if (!cvz_ending) {
		cvz_warn([NSString stringWithFormat:@"unknown command %.20s",
		    cmd]);
	}
}

/* Commands from capsuled; at EOF it has gone, and so does the VM. */
static void
cvz_read_control(void)
{
	static char buf[CVZ_MAX_CMD];
	static size_t len;
	static int skipping;	/* the rest of an overlong line */
	char *nl;
	ssize_t n;

	if ((n = read(CVZ_FD_CONTROL, buf + len, sizeof(buf) - len)) < 0 &&
	    (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		dispatch_source_cancel(cvz_control);
		cvz_say(nil, @"capsuled has gone; stopping the VM");
		cvz_stop();
		return;
	}
	len += (size_t)n;
	while ((nl = memchr(buf, '\n', len)) != NULL) {
		*nl = '\0';
		if (!skipping)
			cvz_command(buf);
		skipping = 0;
		len -= (size_t)(nl + 1 - buf);
		memmove(buf, nl + 1, len);
	}
	if (len == sizeof(buf)) {
		cvz_warn(@"overlong control line ignored");
		skipping = 1;
		len = 0;
	}
}

@implementation CVZDelegate
/* macOS 11: the guest powered off, rebooted or panicked (with
 * panic=-1 a panic reboots, and VZ ends a VM that reboots). */
- (void)guestDidStopVirtualMachine:(VZVirtualMachine *)vm
{
	cvz_ending = 1;
	cvz_stopped(@"guest");
}

/* macOS 11 */
- (void)virtualMachine:(VZVirtualMachine *)vm
    didStopWithError:(NSError *)error
{
	cvz_ending = 1;
	cvz_die_vz(@"the VM stopped", error);
}

/* macOS 12: the NIC has lost its NAT; the VM runs on without it. */
- (void)virtualMachine:(VZVirtualMachine *)vm
    networkDevice:(VZNetworkDevice *)networkDevice
    attachmentWasDisconnectedWithError:(NSError *)error
{
	cvz_warn([NSString stringWithFormat:@"the guest's network was "
	    "disconnected: %@", cvz_text(error)]);
}
@end

static void
cvz_boot(void)
{
	VZVirtualMachineConfiguration *c = cvz_config();
	NSError *e = nil;

	/* macOS 11. This is where VZ refuses a process without the
	 * com.apple.security.virtualization entitlement, and sizes it
	 * cannot give (CPUs, memory). */
	if (![c validateWithError:&e])
		cvz_die_vz(@"VZ refused the VM's configuration", e);
	cvz_vm = [[VZVirtualMachine alloc] initWithConfiguration:c
	    queue:cvz_queue];			/* macOS 11 */
	cvz_delegate = [[CVZDelegate alloc] init];
	cvz_vm.delegate = cvz_delegate;

	cvz_control = dispatch_source_create(DISPATCH_SOURCE_TYPE_READ,
	    CVZ_FD_CONTROL, 0, cvz_queue);
	dispatch_source_set_event_handler(cvz_control, ^{
		cvz_read_control();
	});
	dispatch_resume(cvz_control);

	[cvz_vm startWithCompletionHandler:^(NSError *se) {	/* macOS 11 */
		if (se != nil)
			cvz_die_vz(@"VZ could not start the VM", se);
		if (!cvz_ending)
			cvz_status(@"started", nil, nil);
	}];
}

static int
cvz_probe(void)
{
	NSOperatingSystemVersion v =
	    [NSProcessInfo processInfo].operatingSystemVersion;

	/* macOS 11 */
	if (![VZVirtualMachine isSupported]) {
		printf("Virtualization.framework cannot run VMs here: this "
		    "Mac has no hardware virtualization, or macOS itself runs "
		    "in a VM\n");
		return 1;
	}
	printf("VZ, macOS %ld.%ld.%ld\n", (long)v.majorVersion,
	    (long)v.minorVersion, (long)v.patchVersion);
	return 0;
}

int
main(int argc, char *argv[])
{
	@autoreleasepool {
		/* A write to a gone capsuled fails with EPIPE instead. */
		signal(SIGPIPE, SIG_IGN);
		if (argc == 2 && strcmp(argv[1], "--probe") == 0)
			return cvz_probe();
		cvz_args(argc, argv);
		/* Plain blocking descriptors for VZ's file handles; the
		 * listening ones are set up by their relays. */
		for (int fd = CVZ_FD_CONTROL; fd <= CVZ_FD_CONSOLE; fd++)
			fcntl(fd, F_SETFL, 0);
		/* VZ wants a serial queue: every call and callback on it. */
		cvz_queue = dispatch_queue_create("capsule-vz",
		    DISPATCH_QUEUE_SERIAL);
		dispatch_async(cvz_queue, ^{
			cvz_boot();
		});
	}
	dispatch_main();
}
