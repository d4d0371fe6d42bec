/*
 * libnfsread: reads one file through libnfs with N READs outstanding (the
 * async API and one poll loop), for comparison with bench/nfsread.
 *
 *   cc -O2 -o libnfsread libnfsread.c -lnfs
 *   ./libnfsread 'nfs://127.0.0.1/EXPORT/FILE?version=3&nfsport=P&mountport=M' 32
 *
 * Needs libnfs-dev (Debian). Prints MiB/s like nfsread.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <time.h>
#include <nfsc/libnfs.h>

struct state {
	struct nfs_context *nfs;
	struct nfsfh *fh;
	uint64_t size, next, chunk, done_bytes;
	int outstanding, failed;
};

static void issue(struct state *s);

static void read_cb(int status, struct nfs_context *nfs, void *data, void *priv)
{
	struct state *s = priv;
	(void)nfs;
	s->outstanding--;
	if (status < 0) {
		fprintf(stderr, "libnfsread: read: %s\n", (char *)data);
		s->failed = 1;
		return;
	}
	s->done_bytes += (uint64_t)status;
	issue(s);
}

static void issue(struct state *s)
{
	if (s->failed || s->next >= s->size)
		return;
	uint64_t n = s->chunk;
	if (s->next + n > s->size)
		n = s->size - s->next;
	if (nfs_pread_async(s->nfs, s->fh, s->next, n, read_cb, s) != 0) {
		fprintf(stderr, "libnfsread: pread_async: %s\n", nfs_get_error(s->nfs));
		s->failed = 1;
		return;
	}
	s->next += n;
	s->outstanding++;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s NFS-URL OUTSTANDING\n", argv[0]);
		return 2;
	}
	int depth = atoi(argv[2]);
	struct state s = {0};
	s.nfs = nfs_init_context();
	struct nfs_url *u = nfs_parse_url_full(s.nfs, argv[1]);
	if (u == NULL) {
		fprintf(stderr, "libnfsread: url: %s\n", nfs_get_error(s.nfs));
		return 1;
	}
	if (nfs_mount(s.nfs, u->server, u->path) != 0) {
		fprintf(stderr, "libnfsread: mount: %s\n", nfs_get_error(s.nfs));
		return 1;
	}
	struct nfs_stat_64 st;
	if (nfs_stat64(s.nfs, u->file, &st) != 0 || nfs_open(s.nfs, u->file, O_RDONLY, &s.fh) != 0) {
		fprintf(stderr, "libnfsread: open: %s\n", nfs_get_error(s.nfs));
		return 1;
	}
	s.size = st.nfs_size;
	s.chunk = nfs_get_readmax(s.nfs);
	if (s.chunk > 1 << 20)
		s.chunk = 1 << 20;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < depth; i++)
		issue(&s);
	while (s.outstanding > 0) {
		struct pollfd p = {.fd = nfs_get_fd(s.nfs), .events = nfs_which_events(s.nfs)};
		if (poll(&p, 1, 1000) < 0) {
			perror("poll");
			return 1;
		}
		if (nfs_service(s.nfs, p.revents) < 0) {
			fprintf(stderr, "libnfsread: service: %s\n", nfs_get_error(s.nfs));
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (s.failed || s.done_bytes != s.size) {
		fprintf(stderr, "libnfsread: read %llu of %llu bytes\n", (unsigned long long)s.done_bytes, (unsigned long long)s.size);
		return 1;
	}
	double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("libnfs big file: %llu MiB in %.2fs = %.1f MiB/s (n=%d, chunk=%llu)\n",
	       (unsigned long long)(s.size >> 20), secs, s.size / 1048576.0 / secs, depth, (unsigned long long)s.chunk);
	nfs_close(s.nfs, s.fh);
	nfs_destroy_url(u);
	nfs_destroy_context(s.nfs);
	return 0;
}
