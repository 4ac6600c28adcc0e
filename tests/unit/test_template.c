/*
 * test_template.c — the start-template cache (daemon/template.c) on real
 * files in a scratch dir, no VM: what makes a key, taking one (begin,
 * commit), what a restore gets (RAM sealed against writes, the state, a
 * copy of the disk), one being taken at a time, a key file that does not
 * match, removal, leftovers of a dead daemon, and at most
 * TEMPLATE_DISK_MAX kept.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "rmtree.h"
#include "template.h"
#include "testfs.h"

#define RAM_BYTES	(1 << 20)
#define DISK_BYTES	(4 << 20)

static int tdir = -1;

static int
setup(void **state)
{
	(void)state;
	snprintf(tfs_base, sizeof(tfs_base), "/tmp/captmplXXXXXX");
	assert_non_null(mkdtemp(tfs_base));
	assert_int_equal(mkdir(P("templates"), 0700), 0);
	tdir = open(P("templates"), O_RDONLY | O_DIRECTORY);
	assert_true(tdir >= 0);
	/* A dead daemon's half-made template: init removes it. */
	assert_int_equal(mkdir(P("templates/.building-0123456789abcdef"),
	    0700), 0);
	tfs_put("templates/.building-0123456789abcdef/key", "old", 0600);
	template_init(tdir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	rmtree(tfs_base);
	return 0;
}

static char *
key_of(const char *hv, unsigned vcpus, const char *kernel)
{
	struct template_spec s = { .hv = hv, .vcpus = vcpus,
	    .memory_mib = 512, .disk_mib = 8192, .net = "none" };
	char *k;

	s.kernel_fd = open(P(kernel), O_RDONLY);
	s.initrd_fd = open(P("initrd"), O_RDONLY);
	s.rootfs_fd = open(P("rootfs"), O_RDONLY);
	assert_true(s.kernel_fd >= 0 && s.initrd_fd >= 0 && s.rootfs_fd >= 0);
	k = template_key(&s);
	close(s.kernel_fd);
	close(s.initrd_fd);
	close(s.rootfs_fd);
	assert_non_null(k);
	return k;
}

static void
test_key(void **state)
{
	char *a, *b, *c, *d, *e;
	int fd;

	(void)state;
	tfs_put("kernel", "kernel one", 0644);
	tfs_put("initrd", "initrd", 0644);
	tfs_put("rootfs", "rootfs", 0644);
	a = key_of("qemu tcg QEMU 7.2\nowner 0", 1, "kernel");
	b = key_of("qemu tcg QEMU 7.2\nowner 0", 1, "kernel");
	assert_string_equal(a, b);
	c = key_of("qemu tcg QEMU 7.2\nowner 1000", 1, "kernel");
	d = key_of("qemu tcg QEMU 7.2\nowner 0", 2, "kernel");
	assert_string_not_equal(a, c);
	assert_string_not_equal(a, d);
	/* The same name rewritten in place is another kernel. */
	usleep(20000);
	fd = open(P("kernel"), O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, "kernel two", 10), 10);
	close(fd);
	e = key_of("qemu tcg QEMU 7.2\nowner 0", 1, "kernel");
	assert_string_not_equal(a, e);
	free(a);
	free(b);
	free(c);
	free(d);
	free(e);
	/* init removed what a dead daemon left. */
	assert_int_equal(access(P("templates/.building-0123456789abcdef"),
	    F_OK), -1);
}

/* A guest RAM file: data at 0 and at half, a hole between. */
static int
make_ram(char fill)
{
	char page[4096];
	int fd = memfd_create("test-ram", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, RAM_BYTES), 0);
	memset(page, fill, sizeof(page));
	assert_int_equal(pwrite(fd, page, sizeof(page), 0), sizeof(page));
	assert_int_equal(pwrite(fd, page, sizeof(page), RAM_BYTES / 2),
	    sizeof(page));
	return fd;
}

static int
make_disk(void)
{
	int fd = open(P("disk.img"), O_RDWR | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, DISK_BYTES), 0);
	assert_int_equal(pwrite(fd, "EXT4", 4, 1024), 4);
	return fd;
}

static void
take(const char *key, char fill)
{
	struct cap_err err;
	int st, ram, disk;

	st = template_begin(key, &err);
	assert_true(st >= 0);
	/* One at a time per key. */
	assert_int_equal(template_begin(key, &err), -EEXIST);
	assert_int_equal(write(st, "STATE", 5), 5);
	close(st);
	ram = make_ram(fill);
	disk = make_disk();
	assert_int_equal(template_commit(key, ram, RAM_BYTES, disk, &err), 0);
	close(ram);
	close(disk);
}

static void
test_take_and_restore(void **state)
{
	struct cap_err err;
	struct template *t;
	struct stat st;
	char buf[8], page[4096];
	int ram, fd, seals;

	(void)state;
	assert_null(template_get("key A"));
	take("key A", 'a');
	/* It exists now: no second one. */
	assert_int_equal(template_begin("key A", &err), -EEXIST);
	assert_non_null(t = template_get("key A"));

	/* The RAM: the same bytes, sealed against writes and resizes. */
	ram = template_ram(t);
	assert_int_equal(fstat(ram, &st), 0);
	assert_int_equal(st.st_size, RAM_BYTES);
	assert_int_equal(pread(ram, page, sizeof(page), RAM_BYTES / 2),
	    sizeof(page));
	assert_int_equal(page[0], 'a');
	assert_int_equal(pread(ram, page, 1, RAM_BYTES / 4), 1);
	assert_int_equal(page[0], 0);
	seals = fcntl(ram, F_GET_SEALS);
	assert_true((seals & (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_SEAL)) == (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_SEAL));
	/* Not even through a new open of it, as QEMU's /dev/fd/N is. */
	{
		char path[64];

		snprintf(path, sizeof(path), "/proc/self/fd/%d", ram);
		fd = open(path, O_RDWR);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "x", 1, 0), -1);
		assert_int_equal(errno, EPERM);
		assert_int_equal(ftruncate(fd, 4096), -1);
		assert_null(mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_SHARED, fd, 0) == MAP_FAILED ? NULL : "mapped");
		/* ... but a private mapping, which is what a copy gets. */
		void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE, fd, 0);
		assert_true(m != MAP_FAILED);
		((char *)m)[0] = 'z';
		munmap(m, 4096);
		assert_int_equal(pread(fd, page, 1, 0), 1);
		assert_int_equal(page[0], 'a');
		close(fd);
	}

	/* The state, from its start each time. */
	for (int i = 0; i < 2; i++) {
		fd = template_state(t, &err);
		assert_true(fd >= 0);
		assert_int_equal(read(fd, buf, sizeof(buf)), 5);
		assert_memory_equal(buf, "STATE", 5);
		close(fd);
	}

	/* A copy of the disk, new, as big, with the same bytes. */
	assert_int_equal(mkdir(P("vm"), 0700), 0);
	{
		int vm = open(P("vm"), O_RDONLY | O_DIRECTORY);

		fd = template_copy_disk(t, vm, "disk.img", &err);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_size, DISK_BYTES);
		assert_true(st.st_blocks * 512 < DISK_BYTES);	/* sparse */
		assert_int_equal(pread(fd, buf, 4, 1024), 4);
		assert_memory_equal(buf, "EXT4", 4);
		close(fd);
		/* Never over an existing file. */
		assert_true(template_copy_disk(t, vm, "disk.img", &err) < 0);
		close(vm);
	}
}

static void
test_key_file_decides(void **state)
{
	char id[17], rel[64];

	(void)state;
	/* A directory where "key B" would be, saying it is another key. */
	template_id("key B", id);
	snprintf(rel, sizeof(rel), "templates/%s", id);
	assert_int_equal(mkdir(P(rel), 0700), 0);
	snprintf(rel, sizeof(rel), "templates/%s/key", id);
	tfs_put(rel, "key C", 0600);
	snprintf(rel, sizeof(rel), "templates/%s/ram", id);
	tfs_put(rel, "ram", 0600);
	assert_null(template_get("key B"));
}

static void
test_drop_and_prune(void **state)
{
	char key[32], id[17], rel[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	(void)state;
	assert_non_null(template_get("key A"));
	template_drop("key A");
	assert_null(template_get("key A"));
	template_id("key A", id);
	snprintf(rel, sizeof(rel), "templates/%s", id);
	assert_int_equal(access(P(rel), F_OK), -1);

	/* More than TEMPLATE_DISK_MAX: the least recently used go. */
	for (int i = 0; i < TEMPLATE_DISK_MAX + 3; i++) {
		snprintf(key, sizeof(key), "key %d", i);
		take(key, (char)('0' + i));
		usleep(10000);
	}
	assert_non_null(dir = opendir(P("templates")));
	while ((d = readdir(dir)) != NULL)
		if (strlen(d->d_name) == 16)
			n++;
	closedir(dir);
	/* ("key B"'s stray dir from the last test counts too.) */
	assert_int_equal(n, TEMPLATE_DISK_MAX);
	snprintf(key, sizeof(key), "key %d", TEMPLATE_DISK_MAX + 2);
	assert_non_null(template_get(key));
	assert_null(template_get("key 0"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key),
		cmocka_unit_test(test_take_and_restore),
		cmocka_unit_test(test_key_file_decides),
		cmocka_unit_test(test_drop_and_prune),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
