/*
 * zfill: fill anonymous memory with compressible, non-uniform pages (for
 * zram/swap pressure: zram must not see "same-filled" pages).
 *
 *   zfill MB [hold]
 *
 * Every page gets a header naming its index plus a short text pattern
 * repeated with a page-specific phase, so all pages differ from one another
 * and none is filled with one repeated word, yet each compresses well.
 * Without hold: a second pass reads every page back and checks it
 * ("errors": mismatching pages), then exit.  With hold: print the RESULT and
 * stay in the background holding the memory ("pid").
 */
#include "common.h"

#define PAGE WL_PAGE_SIZE

static const char pattern[] = "zfill compressible text for zram: the quick brown fox jumps over the lazy dog. ";

#define PLEN (sizeof pattern - 1)
/* The pattern repeated past a page's length from any phase: a page's text
 * is the slice of it from the page's phase, copied in one memcpy (one
 * modulo per byte made the fill and each read-back seconds on TCG). */
static unsigned char repeated[PAGE + 2 * PLEN];

static void init_repeated(void)
{
    for (size_t k = 0; k < sizeof repeated; k++)
        repeated[k] = (unsigned char)pattern[k % PLEN];
}

static void fill_page(unsigned char *p, size_t idx)
{
    int h = snprintf((char *)p, 64, "zfill page %zu\n", idx);
    size_t off = h > 0 ? (size_t)h : 0;
    size_t phase = idx % PLEN;
    /* p[k] = pattern[(k - off + phase) % PLEN] for k in [off, PAGE - 16) */
    memcpy(p + off, repeated + phase, PAGE - 16 - off);
    /* trailer: the index again, binary */
    uint64_t v = (uint64_t)idx;
    memcpy(p + PAGE - 16, &v, 8);
    v = ~v;
    memcpy(p + PAGE - 8, &v, 8);
}

struct zmem {
    const unsigned char *mem;
    size_t pages;
};

/* Pages that no longer hold their pattern. */
static uint64_t count_errors(const void *ctx, uint64_t *checked, uint64_t *first_bad)
{
    const struct zmem *z = ctx;
    static unsigned char ref[PAGE];
    uint64_t errors = 0;
    for (size_t i = 0; i < z->pages; i++) {
        fill_page(ref, i);
        if (memcmp(ref, z->mem + i * PAGE, PAGE)) {
            if (!errors)
                *first_bad = i;
            errors++;
        }
    }
    *checked = z->pages;
    return errors;
}

int main(int argc, char **argv)
{
    const char *cmd = "zfill";
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "hold"))) {
        fprintf(stderr, "usage: zfill MB [hold]\n");
        wl_fail(2, cmd, 0, "usage: zfill MB [hold]");
    }
    size_t bytes;
    uint64_t mb;
    if (mb_to_bytes(argv[1], &bytes, &mb))
        wl_fail(2, cmd, 0, "bad MB '%s'", argv[1]);
    int hold = argc == 3;
    init_repeated();
    int notify = hold ? hold_begin(cmd) : -1;

    unsigned char *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED)
        wl_fail(3, cmd, errno, "mmap of %" PRIu64 " MiB failed", mb);
    if (madvise(mem, bytes, MADV_NOHUGEPAGE))
        wl_fail(3, cmd, errno, "madvise(MADV_NOHUGEPAGE) failed");
    size_t pages = bytes / PAGE;
    for (size_t i = 0; i < pages; i++)
        fill_page(mem + i * PAGE, i);

    struct jbuf j = {0};
    jo_begin(&j);
    jo_str(&j, "cmd", "zfill");
    jo_u64(&j, "mb", mb);
    jo_u64(&j, "pages", (uint64_t)pages);
    struct zmem z = {mem, pages};
    if (hold) {
        jo_int(&j, "pid", getpid());
        emit_result(&j);
        hold_release(notify);
        /* SIGUSR1: check every page (reading it back from zram) */
        hold_verifying("zfill", count_errors, &z);
    }
    uint64_t checked, first_bad;
    uint64_t errors = count_errors(&z, &checked, &first_bad);
    jo_u64(&j, "errors", errors);
    emit_result(&j);
    free(j.p);
    return errors ? 1 : 0;
}
