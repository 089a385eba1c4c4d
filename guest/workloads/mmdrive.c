/*
 * mmdrive: a small script interpreter that sets up pages in one process and
 * drives the kernel's page-migration system calls on them.
 *
 *   mmdrive < script            commands from stdin, one per line
 *   mmdrive -c CMD [-c CMD]...  the given commands instead of stdin
 *
 * Every command prints exactly one line "RESULT {json}" on stdout (flushed);
 * a bad command prints "ERROR {json}" and exits 2, a failing setup syscall
 * prints "ERROR {json}" (with errno) and exits 3.  See README.md.
 */
#include "common.h"

#include <ctype.h>
#include <dirent.h>
#include <malloc.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <linux/io_uring.h>

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425 /* the same on every arch (5.1) */
#endif

#define PAGE WL_PAGE_SIZE
#define HPAGE WL_HPAGE_SIZE
#define STATUS_SENTINEL (-12345)
#define NAME_MAX_LEN 63

struct region {
    char name[NAME_MAX_LEN + 1];
    uintptr_t addr;   /* first page of the region (kept after unmap) */
    size_t pages;
    uintptr_t map_lo; /* mapping incl. guard pages, for munmap */
    size_t map_len;
    int node;         /* node= given at alloc, or -1 */
    int mapped, thp, shared, dontfork;
    uint64_t seed;    /* from the name: patterns differ between regions */
    uint8_t *written; /* per page: holds its pattern (verify checks it) */
    uint64_t *seen_pfn; /* per page: its PFN at the last pageflags read (0: none) */
    int fd;           /* a file region's file, kept open (writeback); else -1 */
};

struct range {
    size_t a, b; /* inclusive page indices */
};

struct rangelist {
    struct range *v;
    size_t n, cap;
    size_t total; /* pages in all ranges */
};

struct pinpipe {
    int rfd, wfd;
    size_t pages;
};

/* The address list of one move/query. */
struct movebuf {
    void **pages;
    int *nodes;
    int *status;
    size_t n, cap;
};

static struct region *regions;
static size_t nregions, capregions;
static void touch_self(void);
static uint64_t now_ns(void);
static void warm_up(void);
static struct pinpipe *pins;
static size_t npins, cappins;
static pid_t *children;
static size_t nchildren, capchildren;
static const char *cur_cmd = "";
static struct jbuf out;
static struct rangelist rl;
static struct movebuf mvb;

#define usage_fail(...) wl_fail(2, cur_cmd, 0, __VA_ARGS__)
#define sys_fail(err, ...) wl_fail(3, cur_cmd, (err), __VA_ARGS__)

static void *xreallocarray(void *p, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        sys_fail(ENOMEM, "allocation too large");
    size_t bytes = n * size;
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q)
        sys_fail(ENOMEM, "out of memory");
    return q;
}

/* ------------------------------------------------------------------ */
/* children, pipes, cleanup                                             */

static void kill_children(void)
{
    for (size_t i = 0; i < nchildren; i++) {
        kill(children[i], SIGKILL);
        while (waitpid(children[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
    nchildren = 0;
}

static void finish(void)
{
    kill_children();
    wl_cleanup_hook = NULL;
    jo_begin(&out);
    jo_str(&out, "cmd", "exit");
    emit_result(&out);
    exit(0);
}

/* ------------------------------------------------------------------ */
/* parsing helpers                                                      */

static void check_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN)
        usage_fail("region name must be 1..%d characters", NAME_MAX_LEN);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '_' && c != '-' && c != '.')
            usage_fail("bad region name '%s' (letters, digits, _ - . only)", name);
    }
}

static struct region *find_region(const char *name)
{
    for (size_t i = 0; i < nregions; i++)
        if (!strcmp(regions[i].name, name))
            return &regions[i];
    return NULL;
}

static struct region *need_region(const char *name)
{
    struct region *r = find_region(name);
    if (!r)
        usage_fail("no region named '%s'", name);
    return r;
}

static struct region *need_mapped(const char *name)
{
    struct region *r = need_region(name);
    if (!r->mapped)
        usage_fail("region '%s' is unmapped", name);
    return r;
}

static size_t parse_index(const char *s, const struct region *r, const char *whole)
{
    uint64_t v;
    if (parse_u64(s, &v))
        usage_fail("bad page index '%s' in '%s'", s, whole);
    if (v >= r->pages)
        usage_fail("page index %" PRIu64 " out of range for region '%s' (%zu pages)", v, r->name, r->pages);
    return (size_t)v;
}

/* "0-3,10,11" -> rl (reset first). */
static void parse_ranges(const char *spec, const struct region *r)
{
    rl.n = 0;
    rl.total = 0;
    if (!spec || !*spec)
        usage_fail("missing page ranges");
    char *copy = strdup(spec);
    if (!copy)
        sys_fail(ENOMEM, "out of memory");
    char *save = NULL;
    size_t len = strlen(spec);
    if (spec[0] == ',' || spec[len - 1] == ',' || strstr(spec, ",,"))
        usage_fail("empty item in range list '%s'", spec);
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        struct range g;
        char *dash = strchr(item, '-');
        if (dash) {
            *dash = 0;
            g.a = parse_index(item, r, spec);
            g.b = parse_index(dash + 1, r, spec);
            if (g.b < g.a)
                usage_fail("range %zu-%zu is reversed", g.a, g.b);
        } else {
            g.a = g.b = parse_index(item, r, spec);
        }
        if (rl.n == rl.cap) {
            rl.cap = rl.cap ? rl.cap * 2 : 16;
            rl.v = xreallocarray(rl.v, rl.cap, sizeof *rl.v);
        }
        rl.v[rl.n++] = g;
        rl.total += g.b - g.a + 1;
    }
    free(copy);
}

static inline uintptr_t page_addr(const struct region *r, size_t idx)
{
    return r->addr + (uintptr_t)idx * PAGE;
}

/* comma list of node numbers, or "none" -> mask */
static void parse_nodes(const char *spec, unsigned long *mask)
{
    memset(mask, 0, WL_NODEMASK_LONGS * sizeof(unsigned long));
    if (!strcmp(spec, "none"))
        return;
    char *copy = strdup(spec);
    if (!copy)
        sys_fail(ENOMEM, "out of memory");
    char *save = NULL;
    int any = 0;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (parse_u64(item, &v) || v >= WL_NODEMASK_BITS)
            usage_fail("bad node '%s' in '%s'", item, spec);
        mask[v / WL_BITS_PER_LONG] |= 1UL << (v % WL_BITS_PER_LONG);
        any = 1;
    }
    free(copy);
    if (!any)
        usage_fail("empty node list '%s'", spec);
}

/* ------------------------------------------------------------------ */
/* page contents                                                        */

static void pattern(const struct region *r, size_t idx, uint64_t w[6])
{
    uint64_t i = idx;
    w[0] = i + 1;
    w[1] = 0x9E3779B97F4A7C15ULL * (i + 1);
    w[2] = r->seed ^ i;
    w[3] = ~i;
    w[4] = (i << 32) ^ 0xA5A5C3C3ULL;
    w[5] = i * 0x100000001B3ULL + 0x5bd1e995ULL;
}

/* The words of a page that carry its pattern. */
static const unsigned PATTERN_WORDS[6] = {0, 1, 2, 128, 256, 511};

static void write_page(struct region *r, size_t idx)
{
    volatile uint64_t *w = (volatile uint64_t *)page_addr(r, idx);
    uint64_t want[6];
    pattern(r, idx, want);
    for (int k = 0; k < 6; k++)
        w[PATTERN_WORDS[k]] = want[k];
    r->written[idx] = 1;
}

/* 1 when a written page still holds its pattern. */
static int page_intact(const struct region *r, size_t idx)
{
    volatile uint64_t *w = (volatile uint64_t *)page_addr(r, idx);
    uint64_t want[6];
    pattern(r, idx, want);
    for (int k = 0; k < 6; k++)
        if (w[PATTERN_WORDS[k]] != want[k])
            return 0;
    return 1;
}

static volatile uint64_t read_sink;

static void read_page(const struct region *r, size_t idx)
{
    volatile uint64_t *w = (volatile uint64_t *)page_addr(r, idx);
    read_sink += w[0];
}

/* ------------------------------------------------------------------ */
/* commands                                                             */

static void result_begin(const char *cmd)
{
    jo_begin(&out);
    jo_str(&out, "cmd", cmd);
}

static void result_ret(long ret, int err)
{
    jo_int(&out, "ret", ret);
    if (ret == -1)
        jo_errno(&out, err);
}

/* Does [lo, lo+len) meet the old addresses of an unmapped region? */
static int overlaps_hole(uintptr_t lo, size_t len)
{
    for (size_t i = 0; i < nregions; i++) {
        const struct region *r = &regions[i];
        if (!r->mapped && lo < r->map_lo + r->map_len && r->map_lo < lo + len)
            return 1;
    }
    return 0;
}

/*
 * mmap(NULL, len) that never returns the addresses of an unmapped region:
 * those must stay holes for move/query.  If the kernel picks such an
 * address, the holes are reserved (PROT_NONE at their old address) while
 * mapping again, then released.
 */
static void *map_avoiding_holes(size_t len, int flags)
{
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (base == MAP_FAILED || !overlaps_hole((uintptr_t)base, len))
        return base;
    munmap(base, len);
    struct region **held = xreallocarray(NULL, nregions, sizeof *held);
    size_t nheld = 0;
    for (size_t i = 0; i < nregions; i++) {
        struct region *r = &regions[i];
        if (r->mapped)
            continue;
        void *p = mmap((void *)r->map_lo, r->map_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == (void *)r->map_lo)
            held[nheld++] = r;
        else if (p != MAP_FAILED)
            munmap(p, r->map_len);
    }
    base = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    int err = errno;
    for (size_t k = 0; k < nheld; k++)
        munmap((void *)held[k]->map_lo, held[k]->map_len);
    free(held);
    if (base != MAP_FAILED && overlaps_hole((uintptr_t)base, len)) {
        munmap(base, len);
        base = MAP_FAILED;
        err = EEXIST;
        fprintf(stderr, "mmdrive: cannot place a mapping outside the unmapped regions\n");
    }
    errno = err;
    return base;
}

static void add_region(const char *name, uintptr_t start, size_t pages, uintptr_t map_lo, size_t map_len, int node,
                       int thp, int shared, int dontfork, int notouch, const char *kind, int fd, int sync);
/* the mthp= size of the region being allocated (0: none), for its RESULT */
static uint64_t alloc_mthp_kb;

/* A region of kernel memory: an io_uring's SQ/CQ ring (one page), which
 * the kernel allocates at io_uring_setup() under the task's mempolicy
 * (bound to node= for that call) and maps at mmap(IORING_OFF_SQ_RING).
 * Never on an LRU list: migration cannot isolate it.  The ring's fd stays
 * open (the ring lives as long as the mapping or the fd). */
static void alloc_uring(const char *name, int node, int dontfork)
{
    if (node >= 0 && wl_bind_task(node))
        sys_fail(errno, "set_mempolicy(MPOL_BIND, node %d) failed", node);
    struct io_uring_params params;
    memset(&params, 0, sizeof params);
    int fd = (int)syscall(__NR_io_uring_setup, 4u, &params);
    int setup_errno = errno;
    if (node >= 0 && syscall(SYS_set_mempolicy, 0UL /* MPOL_DEFAULT */, NULL, 0UL))
        sys_fail(errno, "set_mempolicy(MPOL_DEFAULT) failed");
    if (fd < 0)
        sys_fail(setup_errno, "io_uring_setup failed (CONFIG_IO_URING, kernel.io_uring_disabled?)");
    size_t sq = params.sq_off.array + params.sq_entries * sizeof(unsigned);
    size_t cq = params.cq_off.cqes + params.cq_entries * sizeof(struct io_uring_cqe);
    if (!(params.features & IORING_FEAT_SINGLE_MMAP) || sq > PAGE || cq > PAGE)
        sys_fail(EINVAL, "the io_uring's SQ/CQ ring is not one page (features 0x%x, %zu and %zu bytes)", params.features, sq,
                 cq);
    void *ring = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQ_RING);
    if (ring == MAP_FAILED)
        sys_fail(errno, "mmap of the io_uring's SQ/CQ ring failed");
    if (dontfork && madvise(ring, PAGE, MADV_DONTFORK))
        sys_fail(errno, "madvise(MADV_DONTFORK) failed");
    add_region(name, (uintptr_t)ring, 1, (uintptr_t)ring, PAGE, node, 0, 1, dontfork, 1, "uring", fd, 0);
}

static void cmd_alloc(int argc, char **argv)
{
    if (argc < 3)
        usage_fail("usage: alloc NAME PAGES [node=N] [thp] [mthp=SIZE] [nothp] [hugetlb] [shared] [file=PATH [sync]] [uring] [notouch] [dontfork] [align=2M]");
    const char *name = argv[1];
    check_name(name);
    if (find_region(name))
        usage_fail("region '%s' already exists", name);
    uint64_t pages;
    if (parse_u64(argv[2], &pages) || pages == 0)
        usage_fail("bad page count '%s'", argv[2]);
    if (pages > (uint64_t)((SIZE_MAX - 4 * HPAGE) / PAGE))
        usage_fail("page count %" PRIu64 " too large for this address space", pages);
    long node = -1;
    int thp = 0, nothp = 0, shared = 0, notouch = 0, dontfork = 0, hugetlb = 0, sync = 0, uring = 0;
    uint64_t mthp_kb = 0;
    const char *file = NULL;
    size_t align = PAGE;
    for (int i = 3; i < argc; i++) {
        const char *o = argv[i];
        if (!strncmp(o, "node=", 5)) {
            if (parse_long(o + 5, &node) || node < 0 || node >= WL_NODEMASK_BITS)
                usage_fail("bad node in '%s'", o);
        } else if (!strcmp(o, "thp")) {
            thp = 1;
        } else if (!strncmp(o, "mthp=", 5)) {
            /* a multi-size THP region (6.8+): MADV_HUGEPAGE like thp; the
             * folio size comes from the per-size sysfs knobs, which the
             * harness sets; SIZE is recorded and checked against PAGES */
            char unit = 0;
            if (sscanf(o + 5, "%" SCNu64 "%c", &mthp_kb, &unit) != 2 || (unit != 'K' && unit != 'k' && unit != 'M' && unit != 'm'))
                usage_fail("bad mthp size in '%s' (e.g. mthp=64K)", o);
            mthp_kb *= (unit == 'M' || unit == 'm') ? 1024 : 1;
            if (mthp_kb < 16 || mthp_kb * 1024 >= HPAGE || (mthp_kb & (mthp_kb - 1)))
                usage_fail("mthp size %" PRIu64 "K is not a power of two from 16K to below %zuK", mthp_kb, (size_t)(HPAGE / 1024));
            thp = 1;
        } else if (!strcmp(o, "nothp")) {
            nothp = 1;
        } else if (!strcmp(o, "hugetlb")) {
            hugetlb = 1;
        } else if (!strcmp(o, "uring")) {
            uring = 1;
        } else if (!strcmp(o, "shared")) {
            shared = 1;
        } else if (!strcmp(o, "notouch")) {
            notouch = 1;
        } else if (!strcmp(o, "dontfork")) {
            dontfork = 1;
        } else if (!strncmp(o, "file=", 5) && o[5]) {
            file = o + 5;
        } else if (!strcmp(o, "sync")) {
            sync = 1;
        } else if (!strcmp(o, "align=2M") || !strcmp(o, "align=2m")) {
            align = HPAGE;
        } else if (!strcmp(o, "align=4K") || !strcmp(o, "align=4k")) {
            /* the default */
        } else {
            usage_fail("unknown alloc option '%s'", o);
        }
    }
    if (thp && nothp)
        usage_fail("thp and nothp together");
    if (file && (thp || hugetlb || shared))
        usage_fail("file= takes no thp, hugetlb or shared (a file mapping is shared)");
    if (sync && !file)
        usage_fail("sync needs file=");
    if (hugetlb && (thp || shared || pages % (HPAGE / PAGE)))
        usage_fail("hugetlb takes a multiple of %zu pages and no thp or shared", (size_t)(HPAGE / PAGE));
    if (thp)
        align = HPAGE;
    if (mthp_kb && pages % (mthp_kb * 1024 / PAGE))
        usage_fail("an mthp=%" PRIu64 "K region takes a multiple of %" PRIu64 " pages", mthp_kb, mthp_kb * 1024 / PAGE);
    alloc_mthp_kb = mthp_kb;

    if (uring && (pages != 1 || thp || nothp || hugetlb || shared || file || notouch || align != PAGE))
        usage_fail("a uring region is one page (an io_uring's SQ/CQ ring) and takes only node=N and dontfork");
    size_t len = (size_t)pages * PAGE;
    if (uring) {
        alloc_uring(name, (int)node, dontfork);
        return;
    }
    if (hugetlb) {
        /* hugetlbfs pages from the pool (vm.nr_hugepages), default size:
         * the kernel aligns the mapping; no guards (it never merges). */
        void *h = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
        if (h == MAP_FAILED)
            sys_fail(errno, "mmap(MAP_HUGETLB) of %zu bytes failed (vm.nr_hugepages?)", len);
        if (node >= 0 && wl_mbind_node(h, len, (int)node, 0))
            sys_fail(errno, "mbind(MPOL_BIND, node %ld) failed", node);
        add_region(name, (uintptr_t)h, (size_t)pages, (uintptr_t)h, len, (int)node, 0, 0, dontfork, notouch, "hugetlb", -1, 0);
        return;
    }
    /* One PROT_NONE guard page either side, so that the region's VMAs never
     * merge with a neighbour (smaps then describes exactly this region). */
    size_t map_len = len + 2 * PAGE + (align > PAGE ? align : 0);
    int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE;
    void *base = map_avoiding_holes(map_len, flags);
    if (base == MAP_FAILED)
        sys_fail(errno, "mmap of %zu bytes failed", map_len);
    uintptr_t lo = (uintptr_t)base;
    uintptr_t start = (lo + PAGE + align - 1) & ~(uintptr_t)(align - 1);
    uintptr_t keep_lo = start - PAGE, keep_hi = start + len + PAGE;
    if (keep_lo > lo && munmap((void *)lo, keep_lo - lo))
        sys_fail(errno, "munmap of the alignment head failed");
    if (lo + map_len > keep_hi && munmap((void *)keep_hi, lo + map_len - keep_hi))
        sys_fail(errno, "munmap of the alignment tail failed");
    if (mprotect((void *)keep_lo, PAGE, PROT_NONE) || mprotect((void *)(start + len), PAGE, PROT_NONE))
        sys_fail(errno, "mprotect of the guard pages failed");

    if (madvise((void *)start, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
        sys_fail(errno, "madvise(%s) failed", thp ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE");
    if (dontfork && madvise((void *)start, len, MADV_DONTFORK))
        sys_fail(errno, "madvise(MADV_DONTFORK) failed");
    if (node >= 0 && wl_mbind_node((void *)start, len, (int)node, 0))
        sys_fail(errno, "mbind(MPOL_BIND, node %ld) failed", node);

    int file_fd = -1;
    if (file) {
        /* the file's page cache, mapped shared over the reserved range */
        int fd = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            sys_fail(errno, "open of %s failed", file);
        if (ftruncate(fd, (off_t)len))
            sys_fail(errno, "ftruncate of %s failed", file);
        if (mmap((void *)start, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
            sys_fail(errno, "mmap of %s failed", file);
        file_fd = fd;  /* kept open: writeback starts I/O on it */
    }
    add_region(name, start, (size_t)pages, keep_lo, keep_hi - keep_lo, (int)node, thp, shared || file != NULL, dontfork, notouch,
               file ? "file" : NULL, file_fd, sync);
}

/* Register a mapped region, touch it unless asked not to, print its RESULT. */
static void add_region(const char *name, uintptr_t start, size_t pages, uintptr_t map_lo, size_t map_len, int node,
                       int thp, int shared, int dontfork, int notouch, const char *kind, int fd, int sync)
{
    if (nregions == capregions) {
        capregions = capregions ? capregions * 2 : 16;
        regions = xreallocarray(regions, capregions, sizeof *regions);
    }
    struct region *r = &regions[nregions++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->addr = start;
    r->pages = pages;
    r->map_lo = map_lo;
    r->map_len = map_len;
    r->node = node;
    r->mapped = 1;
    r->thp = thp;
    r->shared = shared;
    r->dontfork = dontfork;
    r->seed = 0xcbf29ce484222325ULL;
    for (const char *c = r->name; *c; c++)
        r->seed = (r->seed ^ (uint8_t)*c) * 0x100000001b3ULL;
    r->written = calloc(pages, 1);
    if (!r->written)
        sys_fail(ENOMEM, "calloc");
    /* a THP region's first write to each 2 MiB is its huge page fault
     * (direct compaction included, or the fallback to a base page): timed */
    uint64_t *fault_ns = NULL;
    size_t nfaults = 0;
    if (!notouch && thp)
        fault_ns = xreallocarray(NULL, pages / 512 + 1, sizeof *fault_ns);
    if (!notouch)
        for (size_t i = 0; i < r->pages; i++) {
            if (fault_ns && (start + i * PAGE) % (512 * PAGE) == 0) {
                uint64_t t0 = now_ns();
                write_page(r, i);
                fault_ns[nfaults++] = now_ns() - t0;
            } else {
                write_page(r, i);
            }
        }
    r->fd = fd;
    if (fd >= 0 && sync) {
        /* write the file's pages back: clean page-cache pages */
        if (msync((void *)start, pages * PAGE, MS_SYNC) || fsync(fd))
            sys_fail(errno, "msync/fsync of %s failed", name);
    }

    result_begin("alloc");
    jo_str(&out, "name", r->name);
    jo_hex(&out, "addr", (uint64_t)r->addr);
    jo_u64(&out, "pages", (uint64_t)r->pages);
    if (node >= 0)
        jo_int(&out, "node", node);
    else
        jo_null(&out, "node");
    jo_bool(&out, "thp", thp);
    if (alloc_mthp_kb)
        jo_u64(&out, "mthp_kb", alloc_mthp_kb);
    alloc_mthp_kb = 0;
    jo_bool(&out, "shared", shared);
    jo_bool(&out, "touched", !notouch);
    if (kind)
        jo_str(&out, "kind", kind);
    if (fault_ns) {
        jo_key(&out, "fault_ns");
        ja_begin(&out);
        for (size_t k = 0; k < nfaults; k++) {
            ja_sep(&out);
            jb_u64(&out, fault_ns[k]);
        }
        ja_end(&out);
        free(fault_ns);
    }
    emit_result(&out);
}

static void cmd_touch_read(int argc, char **argv, int write)
{
    if (argc != 3)
        usage_fail("usage: %s NAME RANGES", argv[0]);
    struct region *r = need_mapped(argv[1]);
    parse_ranges(argv[2], r);
    for (size_t k = 0; k < rl.n; k++)
        for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++) {
            if (write)
                write_page(r, i);
            else
                read_page(r, i);
        }
    result_begin(argv[0]);
    jo_str(&out, "name", r->name);
    jo_u64(&out, "pages", (uint64_t)rl.total);
    emit_result(&out);
}

/* The value of one /proc/vmstat counter (-1 if absent). */
static long long vmstat_value(const char *counter)
{
    FILE *f = fopen("/proc/vmstat", "r");
    if (!f)
        return -1;
    char name[128];
    long long value, found = -1;
    while (fscanf(f, "%127s %lld", name, &value) == 2)
        if (!strcmp(name, counter)) {
            found = value;
            break;
        }
    fclose(f);
    return found;
}

/* touch_until NAME RANGES COUNTER DELTA MAX_MS: write the pages round after
 * round until the vmstat COUNTER has grown by DELTA, or MAX_MS passed (for
 * kernel activity paced by the task's CPU time, like NUMA scanning). */
static void cmd_touch_until(int argc, char **argv)
{
    uint64_t delta, max_ms;
    if (argc != 6 || parse_u64(argv[4], &delta) || parse_u64(argv[5], &max_ms))
        usage_fail("usage: touch_until NAME RANGES COUNTER DELTA MAX_MS");
    struct region *r = need_mapped(argv[1]);
    parse_ranges(argv[2], r);
    long long start = vmstat_value(argv[3]);
    if (start < 0)
        usage_fail("no vmstat counter '%s'", argv[3]);
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t rounds = 0, elapsed_ms = 0;
    long long value = start;
    do {
        for (size_t k = 0; k < rl.n; k++)
            for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++)
                write_page(r, i);
        rounds++;
        value = vmstat_value(argv[3]);
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t ns = (int64_t)(now.tv_sec - t0.tv_sec) * 1000000000 + (int64_t)(now.tv_nsec - t0.tv_nsec);
        elapsed_ms = (uint64_t)(ns / 1000000);
    } while ((uint64_t)(value - start) < delta && elapsed_ms < max_ms);
    result_begin("touch_until");
    jo_str(&out, "name", r->name);
    jo_str(&out, "counter", argv[3]);
    jo_int(&out, "grew", value - start);
    jo_u64(&out, "rounds", rounds);
    jo_u64(&out, "ms", elapsed_ms);
    emit_result(&out);
}

static void cmd_touch(int argc, char **argv) { cmd_touch_read(argc, argv, 1); }
static void cmd_readfault(int argc, char **argv) { cmd_touch_read(argc, argv, 0); }

static void cmd_mlock_munlock(int argc, char **argv, int lock)
{
    if (argc != 3)
        usage_fail("usage: %s NAME RANGES", argv[0]);
    struct region *r = need_mapped(argv[1]);
    parse_ranges(argv[2], r);
    for (size_t k = 0; k < rl.n; k++) {
        void *a = (void *)page_addr(r, rl.v[k].a);
        size_t len = (rl.v[k].b - rl.v[k].a + 1) * PAGE;
        if (lock ? mlock(a, len) : munlock(a, len))
            sys_fail(errno, "%s of pages %zu-%zu failed", argv[0], rl.v[k].a, rl.v[k].b);
    }
    result_begin(argv[0]);
    jo_str(&out, "name", r->name);
    jo_u64(&out, "pages", (uint64_t)rl.total);
    emit_result(&out);
}

static void cmd_mlock(int argc, char **argv) { cmd_mlock_munlock(argc, argv, 1); }
static void cmd_munlock(int argc, char **argv) { cmd_mlock_munlock(argc, argv, 0); }

static struct pinpipe *new_pin_pipe(void)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC))
        sys_fail(errno, "pipe2 failed (%zu pin pipes open)", npins);
    /* 16 MiB = 4096 pages per pipe (root may exceed pipe-max-size), else
     * 1 MiB = 256 pages, else the default 16 pages. */
    if (fcntl(fds[1], F_SETPIPE_SZ, 16 << 20) < 0)
        (void)fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
    if (npins == cappins) {
        cappins = cappins ? cappins * 2 : 16;
        pins = xreallocarray(pins, cappins, sizeof *pins);
    }
    struct pinpipe *p = &pins[npins++];
    p->rfd = fds[0];
    p->wfd = fds[1];
    p->pages = 0;
    return p;
}

static void cmd_pin(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: pin NAME RANGES");
    struct region *r = need_mapped(argv[1]);
    parse_ranges(argv[2], r);
    size_t pinned = 0, pipes_before = npins;
    for (size_t k = 0; k < rl.n; k++)
        for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++) {
            struct iovec iov = {.iov_base = (void *)page_addr(r, i), .iov_len = PAGE};
            for (;;) {
                struct pinpipe *p = npins ? &pins[npins - 1] : new_pin_pipe();
                ssize_t n = vmsplice(p->wfd, &iov, 1, SPLICE_F_NONBLOCK);
                if (n == (ssize_t)PAGE) {
                    p->pages++;
                    pinned++;
                    break;
                }
                if (n < 0 && errno == EINTR)
                    continue;
                if (n < 0 && errno == EAGAIN && p->pages > 0) {
                    new_pin_pipe(); /* this one is full */
                    continue;
                }
                if (n >= 0)
                    sys_fail(0, "vmsplice of page %zu returned %zd", i, n);
                sys_fail(errno, "vmsplice of page %zu failed", i);
            }
        }
    result_begin("pin");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "pinned", (uint64_t)pinned);
    jo_u64(&out, "new_pipes", (uint64_t)(npins - pipes_before));
    emit_result(&out);
}

static void cmd_unpin(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage_fail("usage: unpin");
    static char buf[65536];
    uint64_t bytes = 0;
    for (size_t k = 0; k < npins; k++) {
        for (;;) {
            ssize_t n = read(pins[k].rfd, buf, sizeof buf);
            if (n > 0) {
                bytes += (uint64_t)n;
                continue;
            }
            if (n == 0 || errno == EAGAIN)
                break;
            if (errno == EINTR)
                continue;
            sys_fail(errno, "read from pin pipe failed");
        }
        close(pins[k].rfd);
        close(pins[k].wfd);
    }
    npins = 0;
    result_begin("unpin");
    jo_u64(&out, "drained", bytes / PAGE);
    emit_result(&out);
}

static void cmd_fork_share(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: fork_share NAME RANGES");
    struct region *r = need_mapped(argv[1]);
    parse_ranges(argv[2], r);
    int sync[2];
    if (pipe(sync))
        sys_fail(errno, "pipe failed");
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        sys_fail(errno, "fork failed");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(0);
        close(sync[0]);
        for (size_t k = 0; k < npins; k++) {
            close(pins[k].rfd);
            close(pins[k].wfd);
        }
        null_stdio();
        /* Map the pages in the child too: a private region's touched pages
         * are already shared by fork's page-table copy, but a shared
         * (shmem) region is not copied at fork and needs this. */
        if (!r->dontfork)
            for (size_t k = 0; k < rl.n; k++)
                for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++)
                    read_page(r, i);
        char c = 'k';
        if (write(sync[1], &c, 1) != 1)
            _exit(1);
        close(sync[1]);
        for (;;)
            pause();
    }
    close(sync[1]);
    char c;
    ssize_t n;
    do
        n = read(sync[0], &c, 1);
    while (n < 0 && errno == EINTR);
    close(sync[0]);
    if (nchildren == capchildren) {
        capchildren = capchildren ? capchildren * 2 : 8;
        children = xreallocarray(children, capchildren, sizeof *children);
    }
    children[nchildren++] = pid;
    if (n != 1)
        sys_fail(0, "fork_share child %d died before it was ready", (int)pid);
    /* fork made every private page of ours copy-on-write: take our copies
     * now, not when a step writes its output, and warm them up */
    touch_self();
    warm_up();
    result_begin("fork_share");
    jo_str(&out, "name", r->name);
    jo_int(&out, "child", pid);
    jo_u64(&out, "pages", (uint64_t)rl.total);
    jo_bool(&out, "dontfork", r->dontfork);
    emit_result(&out);
}

/* holes NAME: MADV_DONTNEED every other page of the region, those at an
 * even PFN, leaving its memory fragmented (each freed page sits between
 * two used ones, where compaction's free scanner finds targets); the freed
 * pages no longer hold a pattern.  By PFN because a free scanner that
 * found nothing in a pageblock samples the next one with a doubled stride
 * from its first PFN (5.10's isolate_freepages()): even PFNs only.  Pages
 * not present are left alone; without a pagemap, the odd pages by index. */
static void cmd_holes(int argc, char **argv)
{
    if (argc != 2)
        usage_fail("usage: holes NAME");
    struct region *r = need_mapped(argv[1]);
    int map = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    size_t freed = 0, by_pfn = 0;
    uint64_t *ents = calloc(r->pages ? r->pages : 1, sizeof *ents);
    int have = map >= 0 && ents && !wl_pagemap(map, page_addr(r, 0), r->pages, ents);
    for (size_t i = 0; i < r->pages; i++) {
        int hole = i % 2;
        if (have) {
            uint64_t ent = ents[i];
            if (!((ent >> 63) & 1))
                continue;
            hole = !((ent & ((1ULL << 55) - 1)) & 1);
            by_pfn++;
        }
        if (!hole)
            continue;
        if (madvise((void *)page_addr(r, i), PAGE, MADV_DONTNEED))
            sys_fail(errno, "madvise(MADV_DONTNEED) of page %zu failed", i);
        r->written[i] = 0;
        freed++;
    }
    if (map >= 0)
        close(map);
    free(ents);
    result_begin("holes");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "freed", (uint64_t)freed);
    jo_u64(&out, "by_pfn", (uint64_t)by_pfn);
    emit_result(&out);
}

static const uint64_t *release_pfns;

static int release_by_pfn(const void *a, const void *b)
{
    uint64_t x = release_pfns[*(const size_t *)a], y = release_pfns[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* release NAME COUNT: MADV_DONTNEED the COUNT pages of the region that sit
 * at the lowest physical addresses (pagemap), so that what is allocated
 * next on that node lands there, low in the zone where compaction's
 * migration scanner starts; they no longer hold a pattern. */
static void cmd_release(int argc, char **argv)
{
    uint64_t count;
    if (argc != 3 || parse_u64(argv[2], &count))
        usage_fail("usage: release NAME COUNT");
    struct region *r = need_mapped(argv[1]);
    if (count > r->pages)
        usage_fail("release: %s has %zu pages, not %" PRIu64, r->name, r->pages, count);
    uint64_t *pfn = xreallocarray(NULL, r->pages, sizeof *pfn);
    size_t *order = xreallocarray(NULL, r->pages, sizeof *order);
    int map = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (map < 0)
        sys_fail(errno, "cannot open /proc/self/pagemap");
    if (wl_pagemap(map, page_addr(r, 0), r->pages, pfn))
        sys_fail(errno, "pread of /proc/self/pagemap failed");
    for (size_t i = 0; i < r->pages; i++) {
        uint64_t ent = pfn[i];
        pfn[i] = (ent >> 63) & 1 ? ent & ((1ULL << 55) - 1) : UINT64_MAX;
        order[i] = i;
    }
    close(map);
    release_pfns = pfn;
    qsort(order, r->pages, sizeof *order, release_by_pfn);
    uint64_t highest = 0;
    for (size_t k = 0; k < count; k++) {
        size_t i = order[k];
        if (madvise((void *)page_addr(r, i), PAGE, MADV_DONTNEED))
            sys_fail(errno, "madvise(MADV_DONTNEED) of page %zu failed", i);
        r->written[i] = 0;
        if (pfn[i] != UINT64_MAX && pfn[i] > highest)
            highest = pfn[i];
    }
    result_begin("release");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "released", count);
    jo_u64(&out, "lowest_pfn", r->pages ? pfn[order[0]] : 0);
    jo_u64(&out, "highest_released_pfn", highest);
    free(pfn);
    free(order);
    emit_result(&out);
}

/* writeback NAME RANGES: start writeback of a file region's dirty pages
 * (sync_file_range(SYNC_FILE_RANGE_WRITE): the I/O is submitted, not
 * waited for), so that they are under writeback, and clean, for a while
 * (on a throttled disk) when the next command runs. */
static void cmd_writeback(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: writeback NAME RANGES");
    struct region *r = need_mapped(argv[1]);
    if (r->fd < 0)
        usage_fail("writeback: %s is not a file region", r->name);
    parse_ranges(argv[2], r);
    for (size_t k = 0; k < rl.n; k++)
        if (sync_file_range(r->fd, (off_t)(rl.v[k].a * PAGE), (off_t)((rl.v[k].b - rl.v[k].a + 1) * PAGE), SYNC_FILE_RANGE_WRITE))
            sys_fail(errno, "sync_file_range of %s failed", r->name);
    result_begin("writeback");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "pages", (uint64_t)rl.total);
    emit_result(&out);
}

static void cmd_unmap(int argc, char **argv)
{
    if (argc != 2)
        usage_fail("usage: unmap NAME");
    struct region *r = need_mapped(argv[1]);
    if (munmap((void *)r->map_lo, r->map_len))
        sys_fail(errno, "munmap failed");
    r->mapped = 0;
    if (r->seen_pfn)
        memset(r->seen_pfn, 0, r->pages * sizeof *r->seen_pfn);
    result_begin("unmap");
    jo_str(&out, "name", r->name);
    jo_hex(&out, "addr", (uint64_t)r->addr);
    jo_u64(&out, "pages", (uint64_t)r->pages);
    emit_result(&out);
}

static void mvb_push(void *addr, int node)
{
    if (mvb.n == mvb.cap) {
        mvb.cap = mvb.cap ? mvb.cap * 2 : 1024;
        mvb.pages = xreallocarray(mvb.pages, mvb.cap, sizeof *mvb.pages);
        mvb.nodes = xreallocarray(mvb.nodes, mvb.cap, sizeof *mvb.nodes);
        mvb.status = xreallocarray(mvb.status, mvb.cap, sizeof *mvb.status);
    }
    mvb.pages[mvb.n] = addr;
    mvb.nodes[mvb.n] = node;
    mvb.n++;
}

/* NAME:RANGES[=NODE] ... -> mvb */
static void parse_entries(int argc, char **argv, int first, int need_node)
{
    mvb.n = 0;
    if (first >= argc)
        usage_fail("usage: %s NAME:RANGES%s ...", argv[0], need_node ? "=NODE" : "[=NODE]");
    for (int t = first; t < argc; t++) {
        char *tok = strdup(argv[t]);
        if (!tok)
            sys_fail(ENOMEM, "out of memory");
        char *colon = strchr(tok, ':');
        if (!colon)
            usage_fail("entry '%s' is not NAME:RANGES%s", argv[t], need_node ? "=NODE" : "");
        *colon = 0;
        char *eq = strchr(colon + 1, '=');
        long node = 0;
        if (eq) {
            *eq = 0;
            if (parse_long(eq + 1, &node) || node < INT_MIN || node > INT_MAX)
                usage_fail("bad node in entry '%s'", argv[t]);
        } else if (need_node) {
            usage_fail("entry '%s' has no =NODE", argv[t]);
        }
        struct region *r = need_region(tok);
        parse_ranges(colon + 1, r);
        for (size_t k = 0; k < rl.n; k++)
            for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++)
                mvb_push((void *)page_addr(r, i), (int)node);
        free(tok);
    }
}

static void emit_status(void)
{
    jo_key(&out, "status");
    ja_begin(&out);
    jb_reserve(&out, mvb.n * 7);
    for (size_t i = 0; i < mvb.n; i++) {
        ja_sep(&out);
        jb_i64(&out, mvb.status[i]);
    }
    ja_end(&out);
}

/* CLOCK_MONOTONIC in ns: a measured call's own duration (the metrics) */
static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void cmd_move(int argc, char **argv)
{
    int all = argc > 1 && !strcmp(argv[1], "all");
    parse_entries(argc, argv, all ? 2 : 1, 1);
    for (size_t i = 0; i < mvb.n; i++)
        mvb.status[i] = STATUS_SENTINEL;
    int flags = all ? WL_MPOL_MF_MOVE_ALL : WL_MPOL_MF_MOVE;
    errno = 0;
    uint64_t t0 = now_ns();
    long ret = syscall(SYS_move_pages, 0L, (unsigned long)mvb.n, mvb.pages, mvb.nodes, mvb.status, (long)flags);
    uint64_t took = now_ns() - t0;
    int err = errno;
    result_begin("move");
    jo_str(&out, "flags", all ? "MOVE_ALL" : "MOVE");
    result_ret(ret, err);
    jo_u64(&out, "ns", took);
    jo_u64(&out, "n", (uint64_t)mvb.n);
    emit_status();
    emit_result(&out);
}

static void cmd_query(int argc, char **argv)
{
    parse_entries(argc, argv, 1, 0);
    for (size_t i = 0; i < mvb.n; i++)
        mvb.status[i] = STATUS_SENTINEL;
    errno = 0;
    long ret = syscall(SYS_move_pages, 0L, (unsigned long)mvb.n, mvb.pages, NULL, mvb.status, 0L);
    int err = errno;
    result_begin("query");
    result_ret(ret, err);
    jo_u64(&out, "n", (uint64_t)mvb.n);
    emit_status();
    emit_result(&out);
}

static void cmd_mbind(int argc, char **argv)
{
    if (argc != 5 && argc != 6)
        usage_fail("usage: mbind NAME RANGE NODES FLAGS [mode=bind|preferred|interleave|default]");
    struct region *r = need_region(argv[1]);
    parse_ranges(argv[2], r);
    for (size_t k = 1; k < rl.n; k++)
        if (rl.v[k].a != rl.v[k - 1].b + 1)
            usage_fail("mbind needs one contiguous range, not '%s'", argv[2]);
    unsigned long mask[WL_NODEMASK_LONGS];
    parse_nodes(argv[3], mask);
    unsigned flags = 0;
    if (strcmp(argv[4], "0")) {
        char *copy = strdup(argv[4]);
        if (!copy)
            sys_fail(ENOMEM, "out of memory");
        char *save = NULL;
        for (char *f = strtok_r(copy, "|", &save); f; f = strtok_r(NULL, "|", &save)) {
            if (!strcmp(f, "MOVE"))
                flags |= WL_MPOL_MF_MOVE;
            else if (!strcmp(f, "MOVE_ALL"))
                flags |= WL_MPOL_MF_MOVE_ALL;
            else if (!strcmp(f, "STRICT"))
                flags |= WL_MPOL_MF_STRICT;
            else if (strcmp(f, "0"))
                usage_fail("unknown mbind flag '%s' (MOVE, MOVE_ALL, STRICT or 0)", f);
        }
        free(copy);
    }
    unsigned long mode = WL_MPOL_BIND;
    const char *mode_name = "bind";
    if (argc == 6) {
        mode_name = argv[5];
        if (!strcmp(argv[5], "mode=bind"))
            mode = WL_MPOL_BIND;
        else if (!strcmp(argv[5], "mode=preferred"))
            mode = WL_MPOL_PREFERRED;
        else if (!strcmp(argv[5], "mode=interleave"))
            mode = WL_MPOL_INTERLEAVE;
        else if (!strcmp(argv[5], "mode=default"))
            mode = WL_MPOL_DEFAULT;
        else
            usage_fail("unknown mbind mode '%s'", argv[5]);
        mode_name += 5;
    }
    void *a = (void *)page_addr(r, rl.v[0].a);
    size_t len = rl.total * PAGE;
    errno = 0;
    uint64_t t0 = now_ns();
    long ret = syscall(SYS_mbind, a, (unsigned long)len, mode, mode == WL_MPOL_DEFAULT ? NULL : mask,
                       mode == WL_MPOL_DEFAULT ? 0UL : WL_MAXNODE, (unsigned long)flags);
    uint64_t took = now_ns() - t0;
    int err = errno;
    result_begin("mbind");
    jo_str(&out, "name", r->name);
    jo_str(&out, "mode", mode_name);
    jo_int(&out, "flags", flags);
    jo_u64(&out, "pages", (uint64_t)rl.total);
    result_ret(ret, err);
    jo_u64(&out, "ns", took);
    emit_result(&out);
}

static void cmd_migrate_pages(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: migrate_pages FROM_NODES TO_NODES");
    unsigned long from[WL_NODEMASK_LONGS], to[WL_NODEMASK_LONGS];
    parse_nodes(argv[1], from);
    parse_nodes(argv[2], to);
    errno = 0;
    uint64_t t0 = now_ns();
    long ret = syscall(SYS_migrate_pages, 0L, WL_MAXNODE, from, to);
    uint64_t took = now_ns() - t0;
    int err = errno;
    result_begin("migrate_pages");
    result_ret(ret, err);
    jo_u64(&out, "ns", took);
    emit_result(&out);
}

static void cmd_nodes(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: nodes NAME RANGES");
    struct region *r = need_region(argv[1]);
    parse_ranges(argv[2], r);
    result_begin("nodes");
    jo_str(&out, "name", r->name);
    jo_key(&out, "nodes");
    ja_begin(&out);
    struct jbuf errs = {0};
    errs.first = 1;
    size_t pos = 0;
    for (size_t k = 0; k < rl.n; k++)
        for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++, pos++) {
            int node = -1;
            long ret = syscall(SYS_get_mempolicy, &node, NULL, 0UL, (void *)page_addr(r, i),
                               (unsigned long)(WL_MPOL_F_NODE | WL_MPOL_F_ADDR));
            int err = errno;
            ja_sep(&out);
            if (ret < 0) {
                jb_i64(&out, -1);
                ja_sep(&errs);
                jb_printf(&errs, "{\"page\":%zu,\"errno\":%d,\"errno_name\":\"%s\"}", i, err, errno_name(err));
            } else {
                jb_i64(&out, node);
            }
        }
    ja_end(&out);
    if (errs.p) {
        jo_key(&out, "errors");
        jb_raw(&out, "[");
        jb_raw(&out, errs.p);
        jb_raw(&out, "]");
        free(errs.p);
    }
    emit_result(&out);
}

static void cmd_pfns(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: pfns NAME RANGES");
    struct region *r = need_region(argv[1]);
    parse_ranges(argv[2], r);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        sys_fail(errno, "cannot open /proc/self/pagemap");
    static uint64_t ent[4096];
    struct jbuf flags = {0};
    flags.first = 1;
    result_begin("pfns");
    jo_str(&out, "name", r->name);
    jo_key(&out, "pfns");
    ja_begin(&out);
    for (size_t k = 0; k < rl.n; k++) {
        size_t i = rl.v[k].a;
        while (i <= rl.v[k].b) {
            size_t cnt = rl.v[k].b - i + 1;
            if (cnt > sizeof ent / sizeof ent[0])
                cnt = sizeof ent / sizeof ent[0];
            off_t off = (off_t)((uint64_t)(page_addr(r, i) / PAGE) * 8);
            ssize_t n = pread(fd, ent, cnt * 8, off);
            if (n < 0)
                sys_fail(errno, "pread of /proc/self/pagemap failed");
            size_t got = (size_t)n / 8;
            for (size_t e = 0; e < cnt; e++) {
                uint64_t v = e < got ? ent[e] : 0;
                ja_sep(&out);
                jb_u64(&out, (v >> 63) & 1 ? v & ((1ULL << 55) - 1) : 0);
                ja_sep(&flags);
                jb_u64(&flags, v >> 55);
            }
            i += cnt;
        }
    }
    close(fd);
    ja_end(&out);
    jo_key(&out, "flags");
    jb_raw(&out, "[");
    if (flags.p)
        jb_raw(&out, flags.p);
    jb_raw(&out, "]");
    free(flags.p);
    emit_result(&out);
}

static uint64_t kb_value(const char *line)
{
    const char *c = strchr(line, ':');
    return c ? strtoull(c + 1, NULL, 10) : 0;
}

static void cmd_smaps(int argc, char **argv)
{
    if (argc != 2)
        usage_fail("usage: smaps NAME");
    struct region *r = need_region(argv[1]);
    uint64_t lo = r->addr, hi = r->addr + (uint64_t)r->pages * PAGE;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        sys_fail(errno, "cannot open /proc/self/smaps");
    char *line = NULL;
    size_t cap = 0;
    int in = 0, vmas = 0;
    uint64_t rss = 0, ahp = 0, locked = 0, anon = 0, start_vma_lo = 0, start_vma_hi = 0;
    while (getline(&line, &cap, f) > 0) {
        uint64_t s, e;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " ", &s, &e) == 2) {
            in = s < hi && e > lo;
            if (in)
                vmas++;
            if (s <= lo && lo < e) {
                start_vma_lo = s;
                start_vma_hi = e;
            }
            continue;
        }
        if (!in)
            continue;
        if (!strncmp(line, "Rss:", 4))
            rss += kb_value(line);
        else if (!strncmp(line, "AnonHugePages:", 14))
            ahp += kb_value(line);
        else if (!strncmp(line, "Locked:", 7))
            locked += kb_value(line);
        else if (!strncmp(line, "Anonymous:", 10))
            anon += kb_value(line);
    }
    free(line);
    fclose(f);
    result_begin("smaps");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "anon_huge_kb", ahp);
    jo_u64(&out, "rss_kb", rss);
    jo_u64(&out, "locked_kb", locked);
    jo_u64(&out, "anonymous_kb", anon);
    jo_int(&out, "vmas", vmas);
    if (start_vma_hi) {
        jo_hex(&out, "vma_start", start_vma_lo);
        jo_hex(&out, "vma_end", start_vma_hi);
    } else {
        jo_null(&out, "vma_start");
        jo_null(&out, "vma_end");
    }
    emit_result(&out);
}

static void cmd_soft_offline(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: soft_offline NAME IDX");
    struct region *r = need_region(argv[1]);
    size_t idx = parse_index(argv[2], r, argv[2]);
    errno = 0;
    long ret = madvise((void *)page_addr(r, idx), PAGE, MADV_SOFT_OFFLINE);
    int err = errno;
    result_begin("soft_offline");
    jo_str(&out, "name", r->name);
    jo_u64(&out, "page", (uint64_t)idx);
    result_ret(ret, err);
    emit_result(&out);
}

/* vm.stat_refresh: fold the per-CPU counter diffs into /proc/vmstat. */
static void refresh_vmstat(void)
{
    int fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
    if (fd >= 0) {
        /* v5.0 returns EINVAL when a counter is transiently negative: ignore. */
        if (write(fd, "1\n", 2) < 0) {
        }
        close(fd);
    }
}

/* lru_add_drain_all() through memory.force_empty of an empty cgroup v1
 * memory cgroup (mem_cgroup_force_empty() drains every CPU, then finds
 * nothing charged to reclaim: no counter moves).  The hierarchy is mounted
 * at a directory of our own (mounting v1 "memory" again where it is
 * mounted already gives the same hierarchy).  0 or an errno. */
#define DRAIN_PARENT "/dev/shm"
#define DRAIN_MOUNT DRAIN_PARENT "/mmdrive-memcg"
static int drain_by_memcg(void)
{
    static int ready;
    if (!ready) {
        if (mkdir(DRAIN_MOUNT, 0700) && errno != EEXIST)
            return errno;
        struct stat root, parent;
        if (stat(DRAIN_MOUNT, &root) || stat(DRAIN_PARENT, &parent))
            return errno;
        if (root.st_dev == parent.st_dev && mount("memory", DRAIN_MOUNT, "cgroup", 0, "memory"))
            return errno;
        if (mkdir(DRAIN_MOUNT "/drain", 0700) && errno != EEXIST)
            return errno;
        ready = 1;
    }
    int fd = open(DRAIN_MOUNT "/drain/memory.force_empty", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = write(fd, "1\n", 2) < 0 ? errno : 0;
    close(fd);
    return err;
}

/* drain: empty every CPU's LRU pagevecs (lru_add_drain_all()) without
 * migrating anything, so that pages put back by an earlier call, or
 * mlocked in the setup, reach their LRU (and unevictable_pgs_culled)
 * before a step's snapshot, not inside the next step.  A page mlocked
 * while it sat in another CPU's pagevec (mlock's populate drains only its
 * own CPU's) is culled only when that pagevec drains.
 *   - move_pages() of one scratch page to the node it is on runs
 *     migrate_prep() and then finds nothing to move (no migrate_pages()
 *     call, no counter, no event);
 *   - without NUMA (32-bit arm: ENOSYS), memory.force_empty of an empty
 *     memory cgroup (drain_by_memcg);
 *   - without either, lru_add_drain() of this CPU only, through mlock's
 *     populate of the scratch page ("how": "local": a page in another CPU's
 *     pagevec may still reach its LRU later). */
/* lru_add_drain_all(): every CPU's pagevecs onto the LRUs (and the
 * activations they hold done).  0 or an errno; *how and *node say how. */
static int drain_lru(const char **how, int *node, int *memcg_errp)
{
    static volatile char *scratch;
    if (!scratch) {
        void *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            sys_fail(errno, "mmap of the drain page");
        scratch = p;
    }
    scratch[0] = 1;
    *node = -1;
    void *page = (void *)scratch;
    long ret = syscall(SYS_get_mempolicy, node, NULL, 0UL, page, (unsigned long)(WL_MPOL_F_NODE | WL_MPOL_F_ADDR));
    /* v5.0 writes no status[] for a page already on its node: only the
     * return value tells that migrate_prep() ran. */
    int status = -12345, err = 0;
    if (ret == 0) {
        ret = syscall(SYS_move_pages, 0L, 1UL, &page, node, &status, (long)WL_MPOL_MF_MOVE);
        err = ret < 0 ? errno : 0;
    } else {
        err = errno;
    }
    *how = "move_pages";
    *memcg_errp = 0;
    if (ret != 0 && err == ENOSYS) {
        *how = "memcg";
        *memcg_errp = drain_by_memcg();
        ret = *memcg_errp ? -1 : 0;
        err = *memcg_errp;
        if (*memcg_errp) {
            /* The scratch page stays mlocked: only its first mlock counts
             * (unevictable_pgs_mlocked). */
            *how = "local";
            ret = mlock((void *)scratch, PAGE);
            err = ret ? errno : 0;
        }
    }
    return ret == 0 ? 0 : (err ? err : EIO);
}

static void cmd_drain(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage_fail("usage: drain");
    const char *how;
    int node, memcg_err;
    int err = drain_lru(&how, &node, &memcg_err);
    result_begin("drain");
    jo_bool(&out, "drained", err == 0);
    jo_str(&out, "how", how);
    jo_int(&out, "node", node);
    if (memcg_err)
        jo_str(&out, "memcg_error", strerror(memcg_err));
    if (err)
        jo_errno(&out, err);
    emit_result(&out);
}

/* Read a cgroup v1 memory file's number (-1 if unreadable). */
static long long memcg_value(const char *dir, const char *file)
{
    char path[512];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "r");
    long long v = -1;
    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Write TEXT to DIR/FILE; 0 or the errno. */
static int memcg_write(const char *dir, const char *file, const char *text)
{
    char path[512];
    if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
        return ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    int err = write(fd, text, strlen(text)) < 0 ? errno : 0;
    if (close(fd) < 0 && !err)
        err = errno;
    return err;
}

/* memcg DIR: move this process into the cgroup v1 memory cgroup DIR, so
 * that the pages it faults from now on are charged there (and `swapout`
 * can reclaim them); pages it already has stay where they were charged. */
static void cmd_memcg(int argc, char **argv)
{
    if (argc != 2)
        usage_fail("usage: memcg DIR");
    int err = memcg_write(argv[1], "cgroup.procs", "0\n");
    if (err)
        sys_fail(err, "cannot join memory cgroup %s", argv[1]);
    result_begin("memcg");
    jo_str(&out, "dir", argv[1]);
    jo_int(&out, "usage", memcg_value(argv[1], "memory.usage_in_bytes"));
    emit_result(&out);
}

/* cpuset DIR MEMS: move this process into the cgroup v1 cpuset DIR
 * (created if missing, with its parent's CPUs) whose mems are MEMS, e.g.
 * "0": move_pages to a node with memory outside it is -EACCES.  The pages
 * the process has stay where they are (cpuset.memory_migrate is off); its
 * memory policies are rebound to MEMS (mpol_rebind_mm). */
static void cmd_cpuset(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: cpuset DIR MEMS");
    const char *dir = argv[1];
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        sys_fail(errno, "cannot create cpuset %s", dir);
    char parent[512], cpus[256] = "";
    if (snprintf(parent, sizeof parent, "%s/../cpuset.cpus", dir) >= (int)sizeof parent)
        usage_fail("cpuset: directory name too long");
    FILE *f = fopen(parent, "r");
    if (!f || !fgets(cpus, sizeof cpus, f)) {
        int err = f ? EIO : errno;
        if (f)
            fclose(f);
        sys_fail(err, "cannot read %s (is the cpuset hierarchy mounted?)", parent);
    }
    fclose(f);
    int err = memcg_write(dir, "cpuset.cpus", cpus);
    if (!err) {
        char mems[64];
        snprintf(mems, sizeof mems, "%s\n", argv[2]);
        err = memcg_write(dir, "cpuset.mems", mems);
    }
    if (!err)
        err = memcg_write(dir, "cgroup.procs", "0\n");
    if (err)
        sys_fail(err, "cannot join cpuset %s with mems %s", dir, argv[2]);
    result_begin("cpuset");
    jo_str(&out, "dir", dir);
    jo_str(&out, "mems", argv[2]);
    emit_result(&out);
}

/* swapout DIR: reclaim every page charged to memory cgroup DIR
 * (memory.force_empty: anonymous pages go to swap, their PTEs become swap
 * entries) without lowering its limit, so the process faults its stack
 * back at once.  A later read fault brings a page back through the swap
 * cache (a swap device that is not SWP_SYNCHRONOUS_IO, e.g. a disk, not
 * zram), where it stays: a mapped anonymous swap-cache page. */
static void cmd_swapout(int argc, char **argv)
{
    if (argc != 2)
        usage_fail("usage: swapout DIR");
    long long before = memcg_value(argv[1], "memory.usage_in_bytes");
    long long pswpout = vmstat_value("pswpout");
    int err = memcg_write(argv[1], "memory.force_empty", "1\n");
    if (err)
        sys_fail(err, "memory.force_empty of %s failed", argv[1]);
    long long after = memcg_value(argv[1], "memory.usage_in_bytes");
    result_begin("swapout");
    jo_str(&out, "dir", argv[1]);
    jo_int(&out, "usage_before", before);
    jo_int(&out, "usage_after", after);
    jo_int(&out, "pswpout", vmstat_value("pswpout") - pswpout);
    emit_result(&out);
}

/* write PATH TEXT...: write TEXT (the words joined by spaces, and a
 * newline) to PATH, e.g. a sysctl or a sysfs knob, so that a step can
 * change a setting or trigger compaction at its place in the script (the
 * kernel work it starts runs in this process: its trace events carry our
 * pid).  The result has the write's return value and errno. */
static void cmd_write(int argc, char **argv)
{
    if (argc < 3)
        usage_fail("usage: write PATH TEXT...");
    char text[512];
    size_t len = 0;
    for (int i = 2; i < argc; i++) {
        int n = snprintf(text + len, sizeof text - len, "%s%s", i > 2 ? " " : "", argv[i]);
        if (n < 0 || (size_t)n >= sizeof text - len)
            usage_fail("write: TEXT is too long");
        len += (size_t)n;
    }
    text[len++] = '\n';
    int fd = open(argv[1], O_WRONLY | O_CLOEXEC);
    int err = fd < 0 ? errno : 0;
    ssize_t ret = -1;
    if (fd >= 0) {
        ret = write(fd, text, len);
        err = ret < 0 ? errno : 0;
        if (close(fd) < 0 && !err)
            err = errno;
    }
    result_begin("write");
    jo_str(&out, "path", argv[1]);
    jo_int(&out, "ret", (long)ret);
    if (err)
        jo_errno(&out, err);
    emit_result(&out);
}

static void cmd_sleep(int argc, char **argv)
{
    uint64_t ms;
    if (argc != 2 || parse_u64(argv[1], &ms))
        usage_fail("usage: sleep MS");
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
    result_begin("sleep");
    jo_u64(&out, "ms", ms);
    emit_result(&out);
}

/* vmstat: /proc/vmstat after vm.stat_refresh (per-cpu diffs folded in),
 * as {"values": {name: value, ...}}: the snapshots around each step. */
/* The rest of the closed-world snapshot (harness/observe/snapshot.py):
 * every file the kernel keeps memory counters in, raw, as "files":
 * {path: text}.  Read into a static buffer: nothing is allocated that a
 * step could see (the JSON output grows in the brk heap). */
static char snap_buf[65536];

static void snapshot_file(struct jbuf *j, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof snap_buf - 1 && (n = read(fd, snap_buf + len, sizeof snap_buf - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    snap_buf[len] = 0;
    jo_str(j, path, snap_buf);
}

static int is_numbered(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) || !name[n])
        return 0;
    for (const char *c = name + n; *c; c++)
        if (*c < '0' || *c > '9')
            return 0;
    return 1;
}

static void snapshot_files(struct jbuf *j)
{
    static const char *const node_files[] = {"vmstat", "meminfo", "numastat"};
    static const char *const pool_files[] = {"nr_hugepages", "free_hugepages", "surplus_hugepages"};
    char path[640];
    jo_key(j, "files");
    jb_raw(j, "{");
    j->first = 1;
    snapshot_file(j, "/proc/meminfo");
    snapshot_file(j, "/proc/buddyinfo");
    DIR *nodes = opendir("/sys/devices/system/node");
    struct dirent *d;
    while (nodes && (d = readdir(nodes))) {
        if (!is_numbered(d->d_name, "node"))
            continue;
        for (size_t k = 0; k < sizeof node_files / sizeof node_files[0]; k++) {
            snprintf(path, sizeof path, "/sys/devices/system/node/%s/%s", d->d_name, node_files[k]);
            snapshot_file(j, path);
        }
        char pools[320];
        snprintf(pools, sizeof pools, "/sys/devices/system/node/%s/hugepages", d->d_name);
        DIR *sizes = opendir(pools);
        struct dirent *s;
        while (sizes && (s = readdir(sizes))) {
            if (strncmp(s->d_name, "hugepages-", 10))
                continue;
            for (size_t k = 0; k < sizeof pool_files / sizeof pool_files[0]; k++) {
                snprintf(path, sizeof path, "%s/%s/%s", pools, s->d_name, pool_files[k]);
                snapshot_file(j, path);
            }
        }
        if (sizes)
            closedir(sizes);
    }
    if (nodes)
        closedir(nodes);
    DIR *blocks = opendir("/sys/block");
    while (blocks && (d = readdir(blocks))) {
        if (!is_numbered(d->d_name, "zram"))
            continue;
        snprintf(path, sizeof path, "/sys/block/%s/mm_stat", d->d_name);
        snapshot_file(j, path);
    }
    if (blocks)
        closedir(blocks);
    jb_raw(j, "}");
    j->first = 0;
}

static void cmd_vmstat(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage_fail("usage: vmstat");
    refresh_vmstat();
    FILE *f = fopen("/proc/vmstat", "r");
    if (!f)
        sys_fail(errno, "open /proc/vmstat");
    result_begin("vmstat");
    jo_key(&out, "values");
    jb_raw(&out, "{");
    out.first = 1;
    char name[128];
    long long value;
    while (fscanf(f, "%127s %lld", name, &value) == 2)
        jo_int(&out, name, value);
    jb_raw(&out, "}");
    out.first = 0;
    fclose(f);
    snapshot_files(&out);
    emit_result(&out);
}

/* pageflags NAME RANGES: per page, the PFN (/proc/self/pagemap, 0 when not
 * present) and that PFN's /proc/kpageflags word (0 when not present), so a
 * check can compare the flags a page had before a migration with those of
 * the page that replaced it.  And for each page now at another PFN than at
 * this region's previous read, the frame it left: [old PFN, /proc/kpagecount,
 * /proc/kpageflags] in "left", so a check can tell whether the old page was
 * freed (or reused) or is still held. */
static void cmd_pageflags(int argc, char **argv)
{
    if (argc != 3)
        usage_fail("usage: pageflags NAME RANGES");
    struct region *r = need_region(argv[1]);
    parse_ranges(argv[2], r);
    int map = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (map < 0)
        sys_fail(errno, "cannot open /proc/self/pagemap");
    int kpf = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
    if (kpf < 0)
        sys_fail(errno, "cannot open /proc/kpageflags");
    int kpc = open("/proc/kpagecount", O_RDONLY | O_CLOEXEC);
    if (kpc < 0)
        sys_fail(errno, "cannot open /proc/kpagecount");
    if (!r->seen_pfn) {
        r->seen_pfn = calloc(r->pages ? r->pages : 1, sizeof *r->seen_pfn);
        if (!r->seen_pfn)
            sys_fail(ENOMEM, "calloc");
    }
    struct jbuf kflags = {0}, left = {0};
    kflags.first = 1;
    left.first = 1;
    result_begin("pageflags");
    jo_str(&out, "name", r->name);
    jo_key(&out, "pfns");
    ja_begin(&out);
    for (size_t k = 0; k < rl.n; k++)
        for (size_t i = rl.v[k].a; i <= rl.v[k].b; i++) {
            uint64_t ent = 0, word = 0, pfn = 0;
            if (pread(map, &ent, 8, (off_t)((uint64_t)(page_addr(r, i) / PAGE) * 8)) != 8)
                ent = 0;
            if ((ent >> 63) & 1)
                pfn = ent & ((1ULL << 55) - 1);
            if (pfn && pread(kpf, &word, 8, (off_t)(pfn * 8)) != 8)
                word = 0;
            ja_sep(&out);
            jb_u64(&out, pfn);
            ja_sep(&kflags);
            jb_u64(&kflags, word);
            uint64_t old = r->seen_pfn[i];
            if (old && pfn && old != pfn) {
                uint64_t count = 0, oword = 0;
                if (pread(kpc, &count, 8, (off_t)(old * 8)) != 8)
                    count = 0;
                if (pread(kpf, &oword, 8, (off_t)(old * 8)) != 8)
                    oword = 0;
                ja_sep(&left);
                jb_raw(&left, "[");
                jb_u64(&left, old);
                jb_raw(&left, ",");
                jb_u64(&left, count);
                jb_raw(&left, ",");
                jb_u64(&left, oword);
                jb_raw(&left, "]");
            }
            r->seen_pfn[i] = pfn;
        }
    close(map);
    close(kpf);
    close(kpc);
    ja_end(&out);
    jo_key(&out, "kflags");
    jb_raw(&out, "[");
    if (kflags.p)
        jb_raw(&out, kflags.p);
    jb_raw(&out, "]");
    free(kflags.p);
    jo_key(&out, "left");
    jb_raw(&out, "[");
    if (left.p)
        jb_raw(&out, left.p);
    jb_raw(&out, "]");
    free(left.p);
    emit_result(&out);
}

/* kpageflags BITS [not=BITS]: the PFNs whose /proc/kpageflags entry has
 * every bit of BITS set and none of not=BITS (comma lists; KPF_BALLOON is
 * 23), as {"bit" (the first), "mask", "not", "count", "ranges": [[first, n], ...]}. */
static int parse_bits(const char *spec, uint64_t *mask)
{
    char copy[256];
    if (strlen(spec) >= sizeof copy)
        return -1;
    strcpy(copy, spec);
    *mask = 0;
    for (char *save = NULL, *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        uint64_t bit;
        if (parse_u64(item, &bit) || bit > 63)
            return -1;
        *mask |= (uint64_t)1 << bit;
    }
    return *mask ? 0 : -1;
}

static void cmd_kpageflags(int argc, char **argv)
{
    uint64_t mask = 0, not = 0, bit;
    if (argc < 2 || argc > 3 || parse_bits(argv[1], &mask) ||
        (argc == 3 && (strncmp(argv[2], "not=", 4) || parse_bits(argv[2] + 4, &not))))
        usage_fail("usage: kpageflags BIT[,BIT...] [not=BIT[,BIT...]]");
    for (bit = 0; !(mask >> bit & 1); bit++)
        ;
    int fd = open("/proc/kpageflags", O_RDONLY);
    if (fd < 0)
        sys_fail(errno, "open /proc/kpageflags");
    result_begin("kpageflags");
    jo_u64(&out, "bit", bit);
    jo_u64(&out, "mask", mask);
    jo_u64(&out, "not", not);
    jo_key(&out, "ranges");
    jb_raw(&out, "[");
    static uint64_t buf[8192];
    uint64_t pfn = 0, count = 0, first = 0, run = 0, ranges = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sys_fail(errno, "read /proc/kpageflags");
        }
        if (n == 0)
            break;
        for (size_t i = 0; i < (size_t)n / sizeof buf[0]; i++, pfn++) {
            if ((buf[i] & mask) == mask && !(buf[i] & not)) {
                if (run && first + run == pfn) {
                    run++;
                } else {
                    if (run)
                        jb_printf(&out, ranges++ ? ",[%" PRIu64 ",%" PRIu64 "]" : "[%" PRIu64 ",%" PRIu64 "]", first, run);
                    first = pfn;
                    run = 1;
                }
                count++;
            }
        }
    }
    if (run)
        jb_printf(&out, ranges++ ? ",[%" PRIu64 ",%" PRIu64 "]" : "[%" PRIu64 ",%" PRIu64 "]", first, run);
    close(fd);
    jb_raw(&out, "]");
    jo_u64(&out, "count", count);
    emit_result(&out);
}

/* mark TEXT: write TEXT to the trace buffer (trace_marker), so trace events
 * can be cut into steps. */
/* The same mark in the kernel's log, at debug level (never on the
 * console): the kernel's messages are attributed to steps by where they
 * fall between these records. */
static void kmsg_mark(const char *text)
{
    int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char line[600];
    int n = snprintf(line, sizeof line, "<7>harness: %s\n", text);
    if (n > 0 && write(fd, line, (size_t)n) < 0) {
    }
    close(fd);
}

/* kmsg: every record of the kernel's log buffer, with its level (and
 * facility), sequence number and timestamp, as /dev/kmsg gives them:
 * "records": [[prefix, seq, usec, "text"], ...]. */
static void cmd_kmsg(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage_fail("usage: kmsg");
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        sys_fail(errno, "cannot open /dev/kmsg");
    result_begin("kmsg");
    jo_key(&out, "records");
    ja_begin(&out);
    static char rec[8192];
    for (;;) {
        ssize_t n = read(fd, rec, sizeof rec - 1);
        if (n < 0 && errno == EPIPE)
            continue; /* overwritten while we read: the next one */
        if (n <= 0)
            break;
        rec[n] = 0;
        char *semi = strchr(rec, ';');
        if (!semi)
            continue;
        *semi = 0;
        char *msg = semi + 1;
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = 0;
        unsigned long long prefix = 0, seq = 0, usec = 0;
        if (sscanf(rec, "%llu,%llu,%llu", &prefix, &seq, &usec) != 3)
            continue;
        ja_sep(&out);
        jb_printf(&out, "[%llu,%llu,%llu,", prefix, seq, usec);
        jb_str(&out, msg);
        jb_raw(&out, "]");
    }
    close(fd);
    ja_end(&out);
    emit_result(&out);
}

static void cmd_mark(const char *text)
{
    static const char *paths[] = {"/sys/kernel/tracing/trace_marker", "/sys/kernel/debug/tracing/trace_marker"};
    int ok = 0;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && !ok; i++) {
        int fd = open(paths[i], O_WRONLY);
        if (fd < 0)
            continue;
        ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
        close(fd);
    }
    kmsg_mark(text);
    result_begin("mark");
    jo_str(&out, "text", text);
    jo_bool(&out, "ok", ok);
    emit_result(&out);
}

/* cap sys_nice on|off: raise or drop CAP_SYS_NICE in this process's
 * effective set (it stays permitted, so it can come back).  Without it,
 * move_pages and mbind refuse MPOL_MF_MOVE_ALL (-EPERM) and
 * migrate_pages(2) moves only pages this process maps alone
 * (kernel_migrate_pages: capable(CAP_SYS_NICE) ? MOVE_ALL : MOVE). */
#define WL_CAP_SYS_NICE 23
#define WL_LINUX_CAPABILITY_VERSION_3 0x20080522
static void cmd_cap(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "sys_nice") || (strcmp(argv[2], "on") && strcmp(argv[2], "off")))
        usage_fail("usage: cap sys_nice on|off");
    struct { uint32_t version; int pid; } head = {WL_LINUX_CAPABILITY_VERSION_3, 0};
    struct { uint32_t effective, permitted, inheritable; } data[2];
    if (syscall(SYS_capget, &head, data) != 0)
        sys_fail(errno, "capget");
    if (!strcmp(argv[2], "on"))
        data[0].effective |= 1u << WL_CAP_SYS_NICE;
    else
        data[0].effective &= ~(1u << WL_CAP_SYS_NICE);
    if (syscall(SYS_capset, &head, data) != 0)
        sys_fail(errno, "capset");
    result_begin("cap");
    jo_str(&out, "cap", argv[1]);
    jo_str(&out, "state", argv[2]);
    emit_result(&out);
}

static void cmd_exit(int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        usage_fail("usage: exit");
    finish();
}

struct command {
    const char *name;
    void (*fn)(int argc, char **argv);
};

/* verify [NAME [RANGES]]: read every written page (of NAME, or of every
 * mapped region) and compare it with its pattern.  Unwritten pages are not
 * read (that would fault them in). */
static int in_ranges(size_t idx)
{
    for (size_t k = 0; k < rl.n; k++)
        if (idx >= rl.v[k].a && idx <= rl.v[k].b)
            return 1;
    return 0;
}

static void verify_region(const struct region *r, int all, uint64_t *checked, uint64_t *bad_count, int *listed)
{
    for (size_t i = 0; i < r->pages; i++) {
        if (!all && !in_ranges(i))
            continue;
        if (!r->written[i])
            continue;
        (*checked)++;
        if (page_intact(r, i))
            continue;
        (*bad_count)++;
        if ((*listed)++ < 32)
            jb_printf(&out, *listed > 1 ? ",{\"region\":\"%s\",\"page\":%zu}" : "{\"region\":\"%s\",\"page\":%zu}", r->name, i);
    }
}

static void cmd_verify(int argc, char **argv)
{
    if (argc > 3)
        usage_fail("usage: verify [NAME [RANGES]]");
    struct region *one = argc >= 2 ? need_mapped(argv[1]) : NULL;
    if (argc == 3)
        parse_ranges(argv[2], one);
    uint64_t checked = 0, bad_count = 0;
    int listed = 0;
    result_begin("verify");
    if (one)
        jo_str(&out, "name", one->name);
    jo_key(&out, "bad");
    jb_raw(&out, "[");
    for (size_t k = 0; k < nregions; k++) {
        const struct region *r = &regions[k];
        if ((one && r != one) || !r->mapped)
            continue;
        verify_region(r, argc != 3, &checked, &bad_count, &listed);
    }
    jb_raw(&out, "]");
    jo_u64(&out, "checked", checked);
    jo_u64(&out, "bad_count", bad_count);
    emit_result(&out);
}

static const struct command commands[] = {
    {"alloc", cmd_alloc},
    {"verify", cmd_verify},
    {"kmsg", cmd_kmsg},
    {"touch", cmd_touch},
    {"touch_until", cmd_touch_until},
    {"readfault", cmd_readfault},
    {"mlock", cmd_mlock},
    {"munlock", cmd_munlock},
    {"pin", cmd_pin},
    {"unpin", cmd_unpin},
    {"fork_share", cmd_fork_share},
    {"unmap", cmd_unmap},
    {"move", cmd_move},
    {"query", cmd_query},
    {"mbind", cmd_mbind},
    {"migrate_pages", cmd_migrate_pages},
    {"nodes", cmd_nodes},
    {"pfns", cmd_pfns},
    {"smaps", cmd_smaps},
    {"soft_offline", cmd_soft_offline},
    {"sleep", cmd_sleep},
    {"vmstat", cmd_vmstat},
    {"kpageflags", cmd_kpageflags},
    {"pageflags", cmd_pageflags},
    {"drain", cmd_drain},
    {"write", cmd_write},
    {"memcg", cmd_memcg},
    {"cpuset", cmd_cpuset},
    {"swapout", cmd_swapout},
    {"holes", cmd_holes},
    {"release", cmd_release},
    {"writeback", cmd_writeback},
    {"cap", cmd_cap},
    {"exit", cmd_exit},
};

/* Run one script line (modified in place). */
static void run_line(char *line)
{
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = 0;
    char *p = line;
    while (*p && isspace((unsigned char)*p))
        p++;
    if (!*p || *p == '#')
        return;

    /* mark keeps the rest of the line verbatim, like echo. */
    if (!strncmp(p, "mark", 4) && isspace((unsigned char)p[4])) {
        char *t = p + 5;
        while (*t && isspace((unsigned char)*t))
            t++;
        cur_cmd = "mark";
        cmd_mark(t);
        return;
    }

    /* echo keeps the rest of the line verbatim (trimmed). */
    if (!strncmp(p, "echo", 4) && (p[4] == 0 || isspace((unsigned char)p[4]))) {
        char *t = p + 4;
        while (*t && isspace((unsigned char)*t))
            t++;
        size_t tl = strlen(t);
        while (tl && isspace((unsigned char)t[tl - 1]))
            t[--tl] = 0;
        cur_cmd = "echo";
        result_begin("echo");
        jo_str(&out, "text", t);
        emit_result(&out);
        return;
    }

    static char **argv;
    static size_t capargv;
    size_t argc = 0;
    for (char *save = NULL, *tok = strtok_r(p, " \t\r\n\v\f", &save); tok; tok = strtok_r(NULL, " \t\r\n\v\f", &save)) {
        if (argc + 1 >= capargv) {
            capargv = capargv ? capargv * 2 : 64;
            argv = xreallocarray(argv, capargv, sizeof *argv);
        }
        argv[argc++] = tok;
    }
    argv[argc] = NULL;
    if (argc > INT_MAX)
        usage_fail("too many words");
    cur_cmd = argv[0];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(commands[i].name, argv[0])) {
            commands[i].fn((int)argc, argv);
            cur_cmd = "";
            return;
        }
    usage_fail("unknown command '%s'", argv[0]);
}

/* A snapshot read as the vmstat command reads it, then a drain, outside
 * any step: a first read of the snapshot's files has effects of its own
 * (sysfs lookups, the first opendir; 5.10 queues a page of ours for
 * activation, done at the next drain), and they must not fall in a step. */
static void warm_up(void)
{
    refresh_vmstat();
    FILE *f = fopen("/proc/vmstat", "r");
    char name[128];
    long long value;
    while (f && fscanf(f, "%127s %lld", name, &value) == 2)
        ;
    if (f)
        fclose(f);
    struct jbuf scratch = {0};
    jb_reserve(&scratch, 1u << 20);
    jo_begin(&scratch);
    snapshot_files(&scratch);
    free(scratch.p);
    const char *how;
    int node, memcg_err;
    drain_lru(&how, &node, &memcg_err);
}

/* Read every page of our own mappings (text, data, bss, heap, stack) and
 * write back the private writable ones, the workload's regions left
 * alone: what faults in, or is copied after a fork, does so now. */
static void touch_self(void)
{
    static char line[512];
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char perms[8] = "";
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[0] != 'r')
            continue;
        if (strstr(line, "[vvar]") || strstr(line, "[vsyscall]") || strstr(line, "[vdso]"))
            continue;
        int ours = 1;
        for (size_t k = 0; k < nregions && ours; k++)
            if (lo < regions[k].map_lo + regions[k].map_len && regions[k].map_lo < hi)
                ours = 0;
        if (!ours)
            continue;
        for (unsigned long a = lo; a < hi; a += PAGE) {
            volatile char *c = (volatile char *)a;
            char v = *c;
            if (perms[1] == 'w' && perms[3] == 'p')
                *c = v;
        }
    }
    if (maps)
        fclose(maps);
}

/* Fault in, before the first step, the memory mmdrive itself will write:
 * the output buffer (a snapshot's JSON), the snapshot's read buffer and a
 * deep stack.  A page mmdrive faulted in between a step's two snapshots
 * would move the counters the step is held to (nr_anon_pages, pgfault,
 * the page tables) as if the step had done it. */
static void prefault(void)
{
    wl_hold_output(8u << 20);
    jb_reserve(&out, 1u << 20);
    memset(out.p, 0, out.cap);
    memset(snap_buf, 0, sizeof snap_buf);
    /* and the heap's free space: what stdio, opendir and friends malloc
     * later comes out of pages already there (and never given back) */
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    void *heap = malloc(2u << 20);
    if (heap) {
        memset(heap, 0, 2u << 20);
        free(heap);
    }
    /* Our own text, data and bss come in on their first use, as code
     * runs that has not run before: page faults, file pages newly mapped
     * (nr_mapped), data pages copied (nr_anon_pages).  Touch them all now. */
    touch_self();
    warm_up();
    /* the vDSO's data page (vvar) is mapped on the first clock_gettime():
     * the measured calls read the clock around themselves, so read it now
     * (else the first step's window counts that fault) */
    (void)now_ns();
    volatile char stack[256 << 10];
    for (size_t i = 0; i < sizeof stack; i += 4096)
        stack[i] = 0;
}

static void raise_limits(void)
{
    struct rlimit rl_;
    if (!getrlimit(RLIMIT_NOFILE, &rl_) && rl_.rlim_cur < rl_.rlim_max) {
        rl_.rlim_cur = rl_.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl_);
    }
    rl_.rlim_cur = rl_.rlim_max = RLIM_INFINITY;
    if (setrlimit(RLIMIT_MEMLOCK, &rl_) && !getrlimit(RLIMIT_MEMLOCK, &rl_)) {
        rl_.rlim_cur = rl_.rlim_max;
        (void)setrlimit(RLIMIT_MEMLOCK, &rl_);
    }
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mmdrive < script\n"
            "       mmdrive -c CMD [-c CMD]...\n"
            "commands: alloc touch readfault mlock munlock pin unpin fork_share unmap move query\n"
            "          mbind migrate_pages nodes pfns pageflags drain write holes release writeback smaps soft_offline memcg swapout cap sleep echo exit\n"
            "see README.md\n");
}

int main(int argc, char **argv)
{
    wl_cleanup_hook = kill_children;
    /* Our own buffers come from the brk heap, not mmap, so that they never
     * land in the address range of an unmapped region (a 'hole'). */
    mallopt(M_MMAP_MAX, 0);
    raise_limits();
    prefault();
    int ncmds = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stderr);
            return 0;
        }
        if (!strcmp(argv[i], "-c") && i + 1 < argc) {
            i++;
            ncmds++;
            continue;
        }
        cur_cmd = "mmdrive";
        usage(stderr);
        wl_fail(2, "mmdrive", 0, "bad argument '%s' (usage: mmdrive [-c CMD]...)", argv[i]);
    }
    if (ncmds) {
        long n = 0;
        for (int i = 1; i < argc; i++)
            if (!strcmp(argv[i], "-c")) {
                wl_line = ++n;
                char *copy = strdup(argv[++i]);
                if (!copy)
                    sys_fail(ENOMEM, "out of memory");
                run_line(copy);
                free(copy);
            }
    } else {
        char *line = NULL;
        size_t cap = 0;
        while (getline(&line, &cap, stdin) >= 0) {
            wl_line++;
            run_line(line);
        }
        free(line);
    }
    wl_line = 0;
    cur_cmd = "exit";
    finish();
}
