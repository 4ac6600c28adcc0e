/*
 * copy.h — the file trees `capsule cp` moves between the host and a guest.
 *
 * One side runs copy_archive() and the other copy_extract(); between them
 * flows a plain SVR4 "newc" cpio archive (proto/cpio.h), so a script can
 * stand in for either side:
 *
 *	cd "$(dirname SRC)" && find "$(basename SRC)" | cpio -o -H newc
 *	cpio -idm		(in the directory to extract into)
 *
 * (find, not find -depth: the top entry must come first, and everything
 * else below it.)
 *
 * The archive. The first entry is the source itself, named by its last
 * path component (copy_top_name: "dir/sub/" gives "sub"; "/", "." and ".."
 * give "."). Every other entry is "<top>/<path below the source>", and a
 * directory comes before its contents. Entries are regular files (data =
 * contents), directories and symbolic links (data = target; links are
 * archived, never followed, the source itself included). Sockets, fifos
 * and device nodes are skipped. mode is st_mode, mtime whole seconds, uid
 * and gid 0, nlink 1 (2 for directories); a file of 4 GiB or more cannot
 * be stored. Hard links are not kept: each name is a file of its own. (So
 * a script archive of a tree with hard links must not come from GNU cpio,
 * which stores their data with the last link only.) A file that changes
 * size while it is read fails the copy rather than send a corrupt archive.
 *
 * Extraction follows `cp -r`: if dst is an existing directory, the top
 * entry goes inside it under its own name; otherwise it becomes dst, whose
 * parent must exist. Files replace existing files; directories merge into
 * existing directories; anything else (a directory over a file, a file
 * over a directory) is an error. Modes and mtimes are restored (not owners:
 * everything belongs to the caller); directories that already existed keep
 * theirs. A file appears under its name only once all of it has arrived,
 * so a cut archive leaves no partial file behind.
 *
 * The archive is not trusted: names must be the top name or below it, with
 * no "..", "." or empty components and no leading "/"; no symbolic link is
 * followed below dst; only the three entry types above are accepted.
 *
 * Both functions block, keep memory bounded, return 0 or -errno, and put a
 * sentence naming the path involved in err. Ignore SIGPIPE around
 * copy_archive if out_fd is a pipe, to get -EPIPE rather than a signal.
 */
#ifndef CAPSULE_COPY_H
#define CAPSULE_COPY_H

#include <stddef.h>

/* copy_extract flags */
#define COPY_UNTRUSTED	0x1	/* drop setuid, setgid and sticky bits */

/* The archive name of src's top entry; -ENAMETOOLONG if it does not fit. */
int	copy_top_name(const char *src, char *out, size_t outlen);

int	copy_archive(const char *src, int out_fd, char *err, size_t errlen);

/* Reads one archive from in_fd up to its trailer and no further. */
int	copy_extract(int in_fd, const char *dst, int flags, char *err,
	    size_t errlen);
/* The same, but the top entry must be named `top`: when dst is a directory
 * the sender would otherwise choose the name its files land under (say
 * ".ssh" in a home directory). Pass copy_top_name() of the source path. */
int	copy_extract_top(int in_fd, const char *dst, const char *top,
	    int flags, char *err, size_t errlen);

#endif /* CAPSULE_COPY_H */
