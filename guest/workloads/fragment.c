/*
 * fragment: leave memory fragmented so that compaction has work to do.
 *
 *   fragment tmpfs DIR FILES SIZE_KB
 *       mkdir -p DIR, write FILES files of SIZE_KB each (rounded up to whole
 *       pages), unlink the odd-numbered ones; the kept files' page-cache
 *       pages stay after exit.
 *   fragment anon MB [node=N] [hold] [mlock]
 *       MB MiB anonymous (MADV_NOHUGEPAGE, mbind to node N if given),
 *       touch every page, MADV_DONTNEED every odd page; with mlock, then
 *       mlock2(MLOCK_ONFAULT) the region (the kept pages become
 *       unevictable, the holes stay free: with compact_unevictable_allowed
 *       0 compaction cannot move the kept pages to merge the holes); with
 *       hold, print the RESULT and stay in the background holding the
 *       memory.
 *   fragment hog MB [node=N] lowfree=LOW
 *       MB MiB anonymous as above, every page touched, then the LOW MiB of
 *       it at the lowest physical addresses (pagemap) freed again: the
 *       next allocations of the node (a balloon, zspages, ...) land
 *       there, wherever the allocator would have put them otherwise.
 *       Always held: SIGUSR1 checks the kept pages (as anon), SIGUSR2
 *       frees the kept pages at even PFNs (holes above them, where compaction
 *       finds targets) and writes RESULT {"cmd":"fragment-action"} to
 *       /tmp/fragment-PID.action.
 *
 * Output: one "RESULT {json}" line; errors "ERROR {json}" (exit 2 usage,
 * 3 syscall failure).  See README.md.
 */
#include "common.h"

#include <sys/statfs.h>

#define PAGE WL_PAGE_SIZE
#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif

static const char *cmd = "fragment";

static void usage_exit(void)
{
    fprintf(stderr,
            "usage: fragment tmpfs DIR FILES SIZE_KB\n"
            "       fragment anon MB [node=N] [hold] [mlock]\n"
            "       fragment hog MB [node=N] lowfree=LOW\n");
    wl_fail(2, cmd, 0, "usage: fragment tmpfs DIR FILES SIZE_KB | fragment anon MB [node=N] [hold] [mlock] | fragment hog MB [node=N] lowfree=LOW");
}

/* mkdir -p */
static void mkdir_p(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        wl_fail(3, cmd, ENOMEM, "out of memory");
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0755) && errno != EEXIST)
            wl_fail(3, cmd, errno, "mkdir %s failed", p);
        *s = '/';
    }
    if (mkdir(p, 0755) && errno != EEXIST)
        wl_fail(3, cmd, errno, "mkdir %s failed", p);
    struct stat st;
    if (stat(p, &st))
        wl_fail(3, cmd, errno, "stat %s failed", p);
    if (!S_ISDIR(st.st_mode))
        wl_fail(3, cmd, ENOTDIR, "%s is not a directory", p);
    free(p);
}

static uint64_t rng_state = 0x2545F4914F6CDD1DULL;

static uint64_t xorshift(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static void do_tmpfs(int argc, char **argv)
{
    cmd = "tmpfs";
    if (argc != 5)
        usage_exit();
    const char *dir = argv[2];
    if (!*dir)
        wl_fail(2, cmd, 0, "empty DIR");
    uint64_t files, size_kb;
    if (parse_u64(argv[3], &files) || files == 0 || files > 10000000)
        wl_fail(2, cmd, 0, "bad FILES '%s'", argv[3]);
    if (parse_u64(argv[4], &size_kb) || size_kb == 0 || size_kb > ((uint64_t)1 << 30))
        wl_fail(2, cmd, 0, "bad SIZE_KB '%s'", argv[4]);
    uint64_t pages_per_file = (size_kb * 1024 + PAGE - 1) / PAGE;
    mkdir_p(dir);
    struct statfs sfs;
    int on_tmpfs = !statfs(dir, &sfs) && (unsigned long)sfs.f_type == (unsigned long)TMPFS_MAGIC;
    if (!on_tmpfs)
        fprintf(stderr, "fragment: warning: %s is not on tmpfs\n", dir);

    static uint64_t page[PAGE / 8];
    size_t plen = strlen(dir) + 32;
    char *path = malloc(plen);
    if (!path)
        wl_fail(3, cmd, ENOMEM, "out of memory");
    for (uint64_t f = 0; f < files; f++) {
        snprintf(path, plen, "%s/frag%08" PRIu64, dir, f);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            wl_fail(3, cmd, errno, "cannot create %s", path);
        for (uint64_t p = 0; p < pages_per_file; p++) {
            for (size_t w = 0; w < PAGE / 8; w++)
                page[w] = xorshift();
            page[0] = f;
            page[1] = p;
            size_t done = 0;
            while (done < PAGE) {
                ssize_t n = write(fd, (char *)page + done, PAGE - done);
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    wl_fail(3, cmd, n < 0 ? errno : ENOSPC, "write to %s failed", path);
                done += (size_t)n;
            }
        }
        if (close(fd))
            wl_fail(3, cmd, errno, "close of %s failed", path);
    }
    uint64_t kept = 0;
    for (uint64_t f = 0; f < files; f++) {
        if (f % 2 == 0) {
            kept++;
            continue;
        }
        snprintf(path, plen, "%s/frag%08" PRIu64, dir, f);
        if (unlink(path))
            wl_fail(3, cmd, errno, "unlink %s failed", path);
    }
    free(path);
    struct jbuf j = {0};
    jo_begin(&j);
    jo_str(&j, "cmd", "tmpfs");
    jo_str(&j, "dir", dir);
    jo_u64(&j, "files", files);
    jo_u64(&j, "kept", kept);
    jo_u64(&j, "kb_kept", kept * pages_per_file * (PAGE / 1024));
    jo_u64(&j, "pages_per_file", pages_per_file);
    jo_bool(&j, "tmpfs", on_tmpfs);
    emit_result(&j);
    free(j.p);
}

struct anon {
    const char *mem;
    size_t pages;
};

/* The kept (even) pages that lost their two words. */
static uint64_t anon_errors(const void *ctx, uint64_t *checked, uint64_t *first_bad)
{
    const struct anon *a = ctx;
    uint64_t errors = 0;
    *checked = 0;
    for (size_t i = 0; i < a->pages; i += 2) {
        const volatile uint64_t *w = (const volatile uint64_t *)(a->mem + i * PAGE);
        (*checked)++;
        if (w[0] != i + 1 || w[1] != 0x9E3779B97F4A7C15ULL * (i + 1)) {
            if (!errors)
                *first_bad = i;
            errors++;
        }
    }
    return errors;
}

static void do_anon(int argc, char **argv)
{
    cmd = "anon";
    if (argc < 3)
        usage_exit();
    size_t bytes;
    uint64_t mb;
    if (mb_to_bytes(argv[2], &bytes, &mb))
        wl_fail(2, cmd, 0, "bad MB '%s'", argv[2]);
    long node = -1;
    int hold = 0, lock = 0;
    for (int i = 3; i < argc; i++) {
        if (!strncmp(argv[i], "node=", 5)) {
            if (parse_long(argv[i] + 5, &node) || node < 0 || node >= WL_NODEMASK_BITS)
                wl_fail(2, cmd, 0, "bad node in '%s'", argv[i]);
        } else if (!strcmp(argv[i], "hold")) {
            hold = 1;
        } else if (!strcmp(argv[i], "mlock")) {
            lock = 1;
        } else {
            wl_fail(2, cmd, 0, "unknown option '%s'", argv[i]);
        }
    }
    int notify = hold ? hold_begin(cmd) : -1;

    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        wl_fail(3, cmd, errno, "mmap of %" PRIu64 " MiB failed", mb);
    if (madvise(mem, bytes, MADV_NOHUGEPAGE))
        wl_fail(3, cmd, errno, "madvise(MADV_NOHUGEPAGE) failed");
    if (node >= 0 && wl_mbind_node(mem, bytes, (int)node, 0))
        wl_fail(3, cmd, errno, "mbind(MPOL_BIND, node %ld) failed", node);
    size_t pages = bytes / PAGE;
    for (size_t i = 0; i < pages; i++) {
        volatile uint64_t *w = (volatile uint64_t *)(mem + i * PAGE);
        w[0] = i + 1;
        w[1] = 0x9E3779B97F4A7C15ULL * (i + 1);
    }
    size_t freed = 0;
    for (size_t i = 1; i < pages; i += 2) {
        if (madvise(mem + i * PAGE, PAGE, MADV_DONTNEED))
            wl_fail(3, cmd, errno, "madvise(MADV_DONTNEED) of page %zu failed", i);
        freed++;
    }
    /* MLOCK_ONFAULT: the pages present are locked, the holes not faulted in */
    if (lock && syscall(SYS_mlock2, mem, bytes, 1 /* MLOCK_ONFAULT */))
        wl_fail(3, cmd, errno, "mlock2(MLOCK_ONFAULT) failed");
    struct jbuf j = {0};
    jo_begin(&j);
    jo_str(&j, "cmd", "anon");
    jo_u64(&j, "mb", mb);
    jo_u64(&j, "pages", (uint64_t)pages);
    jo_u64(&j, "kept", (uint64_t)(pages - freed));
    jo_u64(&j, "freed", (uint64_t)freed);
    jo_bool(&j, "mlocked", lock);
    if (node >= 0)
        jo_int(&j, "node", node);
    else
        jo_null(&j, "node");
    jo_hex(&j, "addr", (uint64_t)(uintptr_t)mem);
    if (hold)
        jo_int(&j, "pid", getpid());
    else
        jo_null(&j, "pid");
    emit_result(&j);
    free(j.p);
    if (hold) {
        hold_release(notify);
        /* SIGUSR1: check the kept pages (after compaction moved them) */
        struct anon a = {mem, pages};
        hold_verifying("fragment", anon_errors, &a);
    }
}

struct hog {
    char *mem;
    size_t pages;
    uint8_t *kept;
};

static uint64_t hog_errors(const void *ctx, uint64_t *checked, uint64_t *first_bad)
{
    const struct hog *h = ctx;
    uint64_t errors = 0;
    *checked = 0;
    for (size_t i = 0; i < h->pages; i++) {
        if (!h->kept[i])
            continue;
        const volatile uint64_t *w = (const volatile uint64_t *)(h->mem + i * PAGE);
        (*checked)++;
        if (w[0] != i + 1 || w[1] != 0x9E3779B97F4A7C15ULL * (i + 1)) {
            if (!errors)
                *first_bad = i;
            errors++;
        }
    }
    return errors;
}

/* SIGUSR2: free every other kept page: the ones at an even PFN.
 * By PFN, not by index, because a free scanner that found nothing in a
 * pageblock samples the next with a doubled stride (5.10's
 * isolate_freepages(), up to COMPACT_CLUSTER_MAX) from the block's first
 * PFN: it visits even PFNs only, and holes at odd ones would be invisible
 * to it.  Without a pagemap to read, every other kept page by index. */
static void hog_holes(void *ctx, struct jbuf *j)
{
    struct hog *h = ctx;
    uint64_t freed = 0, kept = 0, odd = 0, by_pfn = 0;
    int map = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    uint64_t *ents = calloc(h->pages ? h->pages : 1, sizeof *ents);
    int have = map >= 0 && ents && !wl_pagemap(map, (uintptr_t)h->mem, h->pages, ents);
    for (size_t i = 0; i < h->pages; i++) {
        if (!h->kept[i])
            continue;
        int hole = odd++ % 2;
        uint64_t ent = have ? ents[i] : 0;
        if ((ent >> 63) & 1) {
            hole = !((ent & ((1ULL << 55) - 1)) & 1);
            by_pfn++;
        }
        if (hole && madvise(h->mem + i * PAGE, PAGE, MADV_DONTNEED) == 0) {
            h->kept[i] = 0;
            freed++;
            continue;
        }
        kept++;
    }
    if (map >= 0)
        close(map);
    free(ents);
    jo_u64(j, "freed", freed);
    jo_u64(j, "kept", kept);
    jo_u64(j, "by_pfn", by_pfn);
}

static const uint64_t *sort_pfns;

static int by_pfn(const void *a, const void *b)
{
    uint64_t x = sort_pfns[*(const size_t *)a], y = sort_pfns[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

static void do_hog(int argc, char **argv)
{
    cmd = "hog";
    if (argc < 4)
        usage_exit();
    size_t bytes, low_bytes = 0;
    uint64_t mb, low_mb = 0;
    if (mb_to_bytes(argv[2], &bytes, &mb))
        wl_fail(2, cmd, 0, "bad MB '%s'", argv[2]);
    long node = -1;
    for (int i = 3; i < argc; i++) {
        if (!strncmp(argv[i], "node=", 5)) {
            if (parse_long(argv[i] + 5, &node) || node < 0 || node >= WL_NODEMASK_BITS)
                wl_fail(2, cmd, 0, "bad node in '%s'", argv[i]);
        } else if (!strncmp(argv[i], "lowfree=", 8)) {
            if (mb_to_bytes(argv[i] + 8, &low_bytes, &low_mb) || low_bytes > bytes)
                wl_fail(2, cmd, 0, "bad lowfree in '%s' (at most MB)", argv[i]);
        } else {
            wl_fail(2, cmd, 0, "unknown option '%s'", argv[i]);
        }
    }
    int notify = hold_begin(cmd);
    char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        wl_fail(3, cmd, errno, "mmap of %" PRIu64 " MiB failed", mb);
    if (madvise(mem, bytes, MADV_NOHUGEPAGE))
        wl_fail(3, cmd, errno, "madvise(MADV_NOHUGEPAGE) failed");
    if (node >= 0 && wl_mbind_node(mem, bytes, (int)node, 0))
        wl_fail(3, cmd, errno, "mbind(MPOL_BIND, node %ld) failed", node);
    size_t pages = bytes / PAGE;
    for (size_t i = 0; i < pages; i++) {
        volatile uint64_t *w = (volatile uint64_t *)(mem + i * PAGE);
        w[0] = i + 1;
        w[1] = 0x9E3779B97F4A7C15ULL * (i + 1);
    }
    uint64_t *pfn = calloc(pages, sizeof *pfn);
    size_t *order = calloc(pages, sizeof *order);
    uint8_t *kept = calloc(pages, 1);
    if (!pfn || !order || !kept)
        wl_fail(3, cmd, ENOMEM, "out of memory");
    int map = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (map < 0)
        wl_fail(3, cmd, errno, "cannot open /proc/self/pagemap");
    if (wl_pagemap(map, (uintptr_t)mem, pages, pfn))
        wl_fail(3, cmd, errno, "pread of /proc/self/pagemap failed");
    for (size_t i = 0; i < pages; i++) {
        uint64_t ent = pfn[i];
        pfn[i] = (ent >> 63) & 1 ? ent & ((1ULL << 55) - 1) : UINT64_MAX;
        order[i] = i;
        kept[i] = 1;
    }
    close(map);
    sort_pfns = pfn;
    qsort(order, pages, sizeof *order, by_pfn);
    size_t low = low_bytes / PAGE;
    uint64_t highest_freed = 0;
    for (size_t k = 0; k < low; k++) {
        size_t i = order[k];
        if (madvise(mem + i * PAGE, PAGE, MADV_DONTNEED))
            wl_fail(3, cmd, errno, "madvise(MADV_DONTNEED) of page %zu failed", i);
        kept[i] = 0;
        if (pfn[i] != UINT64_MAX && pfn[i] > highest_freed)
            highest_freed = pfn[i];
    }
    struct jbuf j = {0};
    jo_begin(&j);
    jo_str(&j, "cmd", "hog");
    jo_u64(&j, "mb", mb);
    jo_u64(&j, "pages", (uint64_t)pages);
    jo_u64(&j, "freed_low", (uint64_t)low);
    jo_u64(&j, "lowest_pfn", pages ? pfn[order[0]] : 0);
    jo_u64(&j, "highest_freed_pfn", highest_freed);
    jo_u64(&j, "lowest_kept_pfn", low < pages ? pfn[order[low]] : 0);
    if (node >= 0)
        jo_int(&j, "node", node);
    else
        jo_null(&j, "node");
    jo_int(&j, "pid", getpid());
    emit_result(&j);
    free(j.p);
    free(pfn);
    free(order);
    hold_release(notify);
    struct hog h = {mem, pages, kept};
    hold_serving("fragment", hog_errors, &h, hog_holes, &h);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage_exit();
    if (!strcmp(argv[1], "tmpfs"))
        do_tmpfs(argc, argv);
    else if (!strcmp(argv[1], "anon"))
        do_anon(argc, argv);
    else if (!strcmp(argv[1], "hog"))
        do_hog(argc, argv);
    else if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(stderr, "usage: fragment tmpfs DIR FILES SIZE_KB\n       fragment anon MB [node=N] [hold] [mlock]\n"
                        "       fragment hog MB [node=N] lowfree=LOW\n");
        return 0;
    } else
        usage_exit();
    return 0;
}
