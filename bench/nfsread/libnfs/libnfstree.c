/*
 * libnfstree: reads every regular file of a directory tree through libnfs,
 * N READs outstanding, for comparison with `nfsread -tree` (issue 4's
 * small-file benchmark). Like nfsread it lists with READDIRPLUS (one
 * directory at a time) and reads each file by the handle READDIRPLUS
 * returned, with no LOOKUP or OPEN per file; everything runs on one
 * connection and one poll loop (libnfs's raw async API).
 *
 *   cc -O2 -o libnfstree libnfstree.c -lnfs
 *   ./libnfstree 'nfs://127.0.0.1/EXPORT/DIR?version=3&nfsport=P&mountport=M' 32
 *
 * Needs libnfs-dev (Debian). Prints files/s and MiB/s like nfsread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>

/* libnfs keeps struct nfs_fh private (libnfs-private.h); this is its layout
 * in libnfs 4 and 5, needed to get a directory's handle from nfs_get_fh. */
struct nfs_fh_layout {
	int len;
	char *val;
};

struct fh {
	u_int len;
	char val[64];
};

struct state;

struct file {
	struct fh fh;
	uint64_t size, off;
	struct state *s; /* set while a READ of it is in flight */
};

struct state {
	struct rpc_context *rpc;
	uint32_t chunk;
	int depth;
	struct fh *dirs; /* directories still to list (a stack) */
	size_t ndirs, capdirs;
	struct file *files; /* files still to read (a queue) */
	size_t nfiles, capfiles, headfile;
	int listing; /* a READDIRPLUS is in flight */
	struct fh listdir;
	uint64_t cookie;
	char verf[NFS3_COOKIEVERFSIZE];
	int outstanding, failed;
	uint64_t files_done, bytes_done;
};

static void pump(struct state *s);

static void fh_set(struct fh *d, u_int len, const char *val)
{
	if (len > sizeof d->val) {
		fprintf(stderr, "libnfstree: %u-byte handle\n", len);
		exit(1);
	}
	d->len = len;
	memcpy(d->val, val, len);
}

static void push_dir(struct state *s, u_int len, const char *val)
{
	if (s->ndirs == s->capdirs) {
		s->capdirs = s->capdirs ? 2 * s->capdirs : 64;
		s->dirs = realloc(s->dirs, s->capdirs * sizeof *s->dirs);
	}
	fh_set(&s->dirs[s->ndirs++], len, val);
}

static void push_file(struct state *s, u_int len, const char *val, uint64_t size)
{
	if (s->nfiles == s->capfiles) {
		s->capfiles = s->capfiles ? 2 * s->capfiles : 1024;
		s->files = realloc(s->files, s->capfiles * sizeof *s->files);
	}
	struct file *f = &s->files[s->nfiles++];
	fh_set(&f->fh, len, val);
	f->size = size;
	f->off = 0;
}

static void readdir_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct state *s = priv;
	(void)rpc;
	s->listing = 0;
	READDIRPLUS3res *res = data;
	if (status != RPC_STATUS_SUCCESS || res->status != NFS3_OK) {
		fprintf(stderr, "libnfstree: readdirplus failed (rpc %d, nfs %d)\n", status,
			status == RPC_STATUS_SUCCESS ? (int)res->status : -1);
		s->failed = 1;
		return;
	}
	READDIRPLUS3resok *ok = &res->READDIRPLUS3res_u.resok;
	for (entryplus3 *e = ok->reply.entries; e != NULL; e = e->nextentry) {
		s->cookie = e->cookie;
		if (!strcmp(e->name, ".") || !strcmp(e->name, ".."))
			continue;
		if (!e->name_attributes.attributes_follow || !e->name_handle.handle_follows) {
			fprintf(stderr, "libnfstree: %s: no attributes or handle in READDIRPLUS\n", e->name);
			s->failed = 1;
			return;
		}
		fattr3 *a = &e->name_attributes.post_op_attr_u.attributes;
		nfs_fh3 *h = &e->name_handle.post_op_fh3_u.handle;
		if (a->type == NF3DIR)
			push_dir(s, h->data.data_len, h->data.data_val);
		else if (a->type == NF3REG)
			push_file(s, h->data.data_len, h->data.data_val, a->size);
	}
	memcpy(s->verf, ok->cookieverf, sizeof s->verf);
	if (ok->reply.eof)
		s->cookie = 0; /* this directory is done */
	else
		push_dir(s, s->listdir.len, s->listdir.val); /* continue it next */
	pump(s);
}

static void read_cb(struct rpc_context *rpc, int status, void *data, void *priv)
{
	struct file *f = priv;
	struct state *s = f->s;
	(void)rpc;
	s->outstanding--;
	READ3res *res = data;
	if (status != RPC_STATUS_SUCCESS || res->status != NFS3_OK) {
		fprintf(stderr, "libnfstree: read failed (rpc %d)\n", status);
		s->failed = 1;
		return;
	}
	READ3resok *ok = &res->READ3res_u.resok;
	f->off += ok->count;
	s->bytes_done += ok->count;
	if (ok->eof || ok->count == 0 || f->off >= f->size) {
		s->files_done++;
		free(f);
	} else {
		/* the rest of a file larger than one READ */
		READ3args a = {.offset = f->off, .count = s->chunk};
		a.file.data.data_len = f->fh.len;
		a.file.data.data_val = f->fh.val;
		if (rpc_nfs3_read_async(s->rpc, read_cb, &a, f) != 0) {
			fprintf(stderr, "libnfstree: read: %s\n", rpc_get_error(s->rpc));
			s->failed = 1;
			return;
		}
		s->outstanding++;
	}
	pump(s);
}

/* pump keeps one READDIRPLUS and up to depth READs in flight. */
static void pump(struct state *s)
{
	if (s->failed)
		return;
	if (!s->listing && s->ndirs > 0) {
		s->listdir = s->dirs[--s->ndirs];
		if (s->cookie == 0)
			memset(s->verf, 0, sizeof s->verf);
		READDIRPLUS3args a = {.cookie = s->cookie, .dircount = 32768, .maxcount = 131072};
		memcpy(a.cookieverf, s->verf, sizeof a.cookieverf);
		a.dir.data.data_len = s->listdir.len;
		a.dir.data.data_val = s->listdir.val;
		if (rpc_nfs3_readdirplus_async(s->rpc, readdir_cb, &a, s) != 0) {
			fprintf(stderr, "libnfstree: readdirplus: %s\n", rpc_get_error(s->rpc));
			s->failed = 1;
			return;
		}
		s->listing = 1;
	}
	while (s->outstanding < s->depth && s->headfile < s->nfiles) {
		/* files is only appended to while READs point into it: keep
		 * the pointers valid by reading from a stable copy. */
		struct file *f = malloc(sizeof *f);
		*f = s->files[s->headfile++];
		f->s = s;
		READ3args a = {.offset = 0, .count = f->size < s->chunk ? (f->size ? f->size : 1) : s->chunk};
		a.file.data.data_len = f->fh.len;
		a.file.data.data_val = f->fh.val;
		if (rpc_nfs3_read_async(s->rpc, read_cb, &a, f) != 0) {
			fprintf(stderr, "libnfstree: read: %s\n", rpc_get_error(s->rpc));
			s->failed = 1;
			return;
		}
		s->outstanding++;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s NFS-URL-OF-DIR OUTSTANDING\n", argv[0]);
		return 2;
	}
	struct state s = {0};
	s.depth = atoi(argv[2]);
	struct nfs_context *nfs = nfs_init_context();
	struct nfs_url *u = nfs_parse_url_full(nfs, argv[1]);
	if (u == NULL) {
		fprintf(stderr, "libnfstree: url: %s\n", nfs_get_error(nfs));
		return 1;
	}
	if (nfs_mount(nfs, u->server, u->path) != 0) {
		fprintf(stderr, "libnfstree: mount: %s\n", nfs_get_error(nfs));
		return 1;
	}
	struct nfsfh *dfh;
	if (nfs_open(nfs, u->file, O_RDONLY, &dfh) != 0) {
		fprintf(stderr, "libnfstree: open %s: %s\n", u->file, nfs_get_error(nfs));
		return 1;
	}
	struct nfs_fh_layout *root = (struct nfs_fh_layout *)nfs_get_fh(dfh);
	push_dir(&s, (u_int)root->len, root->val);
	s.rpc = nfs_get_rpc_context(nfs);
	s.chunk = nfs_get_readmax(nfs) > (1 << 20) ? (1 << 20) : (uint32_t)nfs_get_readmax(nfs);

	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pump(&s);
	while (!s.failed && (s.listing || s.outstanding > 0 || s.ndirs > 0 || s.headfile < s.nfiles)) {
		struct pollfd p = {.fd = rpc_get_fd(s.rpc), .events = rpc_which_events(s.rpc)};
		if (poll(&p, 1, 1000) < 0) {
			perror("poll");
			return 1;
		}
		if (rpc_service(s.rpc, p.revents) < 0) {
			fprintf(stderr, "libnfstree: service: %s\n", rpc_get_error(s.rpc));
			return 1;
		}
		pump(&s);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (s.failed || s.files_done != s.nfiles) {
		fprintf(stderr, "libnfstree: read %llu of %zu files\n", (unsigned long long)s.files_done, s.nfiles);
		return 1;
	}
	double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("libnfs tree %s: %llu files, %llu MiB in %.2fs = %.0f files/s, %.1f MiB/s (n=%d)\n", u->file,
	       (unsigned long long)s.files_done, (unsigned long long)(s.bytes_done >> 20), secs,
	       s.files_done / secs, s.bytes_done / 1048576.0 / secs, s.depth);
	nfs_close(nfs, dfh);
	nfs_destroy_url(u);
	nfs_destroy_context(nfs);
	return 0;
}
