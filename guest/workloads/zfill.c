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

static void fill_page(unsigned char *p, size_t idx)
{
    size_t plen = sizeof pattern - 1;
    int h = snprintf((char *)p, 64, "zfill page %zu\n", idx);
    size_t off = h > 0 ? (size_t)h : 0;
    size_t phase = idx % plen;
    for (size_t k = off; k < PAGE - 16; k++)
        p[k] = (unsigned char)pattern[(k - off + phase) % plen];
    /* trailer: the index again, binary */
    uint64_t v = (uint64_t)idx;
    memcpy(p + PAGE - 16, &v, 8);
    v = ~v;
    memcpy(p + PAGE - 8, &v, 8);
}

static volatile sig_atomic_t verify_asked;

static void on_usr1(int sig)
{
    (void)sig;
    verify_asked = 1;
}

/* Pages that no longer hold their pattern. */
static uint64_t count_errors(const unsigned char *mem, size_t pages, uint64_t *first_bad)
{
    static unsigned char ref[PAGE];
    uint64_t errors = 0;
    for (size_t i = 0; i < pages; i++) {
        fill_page(ref, i);
        if (memcmp(ref, mem + i * PAGE, PAGE)) {
            if (!errors && first_bad)
                *first_bad = i;
            errors++;
        }
    }
    return errors;
}

/* Held: on SIGUSR1, check every page (swapping it back in) and write
 * RESULT {"cmd":"zfill-verify","pages","errors","first_bad"} to
 * /tmp/zfill-PID.verify (written whole, then renamed into place). */
static __attribute__((noreturn)) void hold_and_verify(const unsigned char *mem, size_t pages)
{
    char path[64], tmp[80];
    snprintf(path, sizeof path, "/tmp/zfill-%d.verify", (int)getpid());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    for (;;) {
        while (!verify_asked)
            pause();
        verify_asked = 0;
        uint64_t first_bad = 0;
        uint64_t errors = count_errors(mem, pages, &first_bad);
        FILE *f = fopen(tmp, "w");
        if (!f)
            continue;
        if (errors)
            fprintf(f, "RESULT {\"cmd\":\"zfill-verify\",\"pages\":%zu,\"errors\":%" PRIu64 ",\"first_bad\":%" PRIu64 "}\n",
                    pages, errors, first_bad);
        else
            fprintf(f, "RESULT {\"cmd\":\"zfill-verify\",\"pages\":%zu,\"errors\":0,\"first_bad\":null}\n", pages);
        fclose(f);
        rename(tmp, path);
    }
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
    if (hold) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, NULL);
        jo_int(&j, "pid", getpid());
        emit_result(&j);
        hold_release(notify);
        hold_and_verify(mem, pages);
    }
    uint64_t errors = count_errors(mem, pages, NULL);
    jo_u64(&j, "errors", errors);
    emit_result(&j);
    free(j.p);
    return errors ? 1 : 0;
}
