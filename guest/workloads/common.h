/*
 * Shared helpers for the guest workloads (mmdrive, fragment, zfill, seed).
 *
 * Header-only: every workload is compiled alone from its .c file
 * (gcc -static -O2 -Wall -std=gnu11 -o NAME NAME.c), so everything here is
 * static and marked unused so that a program that does not need a helper
 * still compiles without warnings.
 *
 * Output protocol (stdout, one line per result, flushed):
 *   RESULT {json object}
 *   ERROR {"cmd": ..., "message": ..., ["errno": N, "errno_name": "E..."]}
 * Diagnostics go to stderr.
 */
#ifndef WORKLOADS_COMMON_H
#define WORKLOADS_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define WL_UNUSED __attribute__((unused))

#define WL_PAGE_SIZE 4096UL
#define WL_HPAGE_SIZE (2UL << 20)

/* madvise advice values that older libc headers may lack. */
#ifndef MADV_DONTFORK
#define MADV_DONTFORK 10
#endif
#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif

/* NUMA policy constants (<linux/mempolicy.h>, defined here: no libnuma). */
#define WL_MPOL_DEFAULT 0
#define WL_MPOL_PREFERRED 1
#define WL_MPOL_BIND 2
#define WL_MPOL_INTERLEAVE 3
#define WL_MPOL_F_NODE (1 << 0)
#define WL_MPOL_F_ADDR (1 << 1)
#define WL_MPOL_MF_STRICT (1 << 0)
#define WL_MPOL_MF_MOVE (1 << 1)
#define WL_MPOL_MF_MOVE_ALL (1 << 2)

/* Node masks: 1024 bits, passed with maxnode = bits + 1 (as libnuma does). */
#define WL_NODEMASK_BITS 1024
#define WL_BITS_PER_LONG (8 * sizeof(unsigned long))
#define WL_NODEMASK_LONGS (WL_NODEMASK_BITS / (8 * sizeof(unsigned long)))
#define WL_MAXNODE ((unsigned long)WL_NODEMASK_BITS + 1)

/* ------------------------------------------------------------------ */
/* errno names                                                          */

static WL_UNUSED const char *errno_name(int e)
{
    static char buf[24];
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case ECHILD: return "ECHILD";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EXDEV: return "EXDEV";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
#ifdef EHWPOISON
    case EHWPOISON: return "EHWPOISON";
#endif
    default:
        snprintf(buf, sizeof buf, "E%d", e);
        return buf;
    }
}

/* ------------------------------------------------------------------ */
/* A growable string buffer with JSON object helpers                    */

struct jbuf {
    char *p;
    size_t len, cap;
    int first; /* no member written yet in the current object/array */
};

static WL_UNUSED void jb_reserve(struct jbuf *j, size_t extra)
{
    if (j->len + extra + 1 <= j->cap)
        return;
    size_t cap = j->cap ? j->cap : 256;
    while (cap < j->len + extra + 1)
        cap *= 2;
    char *p = realloc(j->p, cap);
    if (!p) {
        fprintf(stderr, "out of memory building output\n");
        exit(3);
    }
    j->p = p;
    j->cap = cap;
}

static WL_UNUSED void jb_raw(struct jbuf *j, const char *s)
{
    size_t n = strlen(s);
    jb_reserve(j, n);
    memcpy(j->p + j->len, s, n + 1);
    j->len += n;
}

static WL_UNUSED __attribute__((format(printf, 2, 3))) void jb_printf(struct jbuf *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[128];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    jb_reserve(j, (size_t)n);
    if ((size_t)n < sizeof small) {
        memcpy(j->p + j->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(j->p + j->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    j->len += (size_t)n;
}

/* A JSON string literal (quoted, escaped; bytes >= 0x80 passed through,
 * invalid UTF-8 replaced by '?'). */
static WL_UNUSED void jb_str(struct jbuf *j, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    jb_reserve(j, strlen(s) * 6 + 2);
    char *o = j->p + j->len;
    *o++ = '"';
    const unsigned char *u = (const unsigned char *)s;
    while (*u) {
        unsigned char c = *u;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
            u++;
        } else if (c == '\n') {
            *o++ = '\\'; *o++ = 'n'; u++;
        } else if (c == '\t') {
            *o++ = '\\'; *o++ = 't'; u++;
        } else if (c == '\r') {
            *o++ = '\\'; *o++ = 'r'; u++;
        } else if (c < 0x20 || c == 0x7f) {
            *o++ = '\\'; *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = hex[c >> 4]; *o++ = hex[c & 15];
            u++;
        } else if (c < 0x80) {
            *o++ = (char)c;
            u++;
        } else {
            /* validate one UTF-8 sequence */
            int n = (c >= 0xf0 && c < 0xf5) ? 3 : (c >= 0xe0 && c < 0xf0) ? 2 : (c >= 0xc2 && c < 0xe0) ? 1 : -1;
            int ok = n > 0;
            for (int k = 1; ok && k <= n; k++)
                if ((u[k] & 0xc0) != 0x80)
                    ok = 0;
            if (!ok) {
                *o++ = '?';
                u++;
            } else {
                for (int k = 0; k <= n; k++)
                    *o++ = (char)u[k];
                u += n + 1;
            }
        }
    }
    *o++ = '"';
    *o = 0;
    j->len = (size_t)(o - j->p);
}

static WL_UNUSED void jo_begin(struct jbuf *j)
{
    j->len = 0;
    jb_raw(j, "{");
    j->first = 1;
}

static WL_UNUSED void jo_key(struct jbuf *j, const char *k)
{
    if (!j->first)
        jb_raw(j, ",");
    j->first = 0;
    jb_str(j, k);
    jb_raw(j, ":");
}

static WL_UNUSED void jo_str(struct jbuf *j, const char *k, const char *v)
{
    jo_key(j, k);
    jb_str(j, v);
}

static WL_UNUSED void jo_int(struct jbuf *j, const char *k, long long v)
{
    jo_key(j, k);
    jb_printf(j, "%lld", v);
}

static WL_UNUSED void jo_u64(struct jbuf *j, const char *k, uint64_t v)
{
    jo_key(j, k);
    jb_printf(j, "%" PRIu64, v);
}

static WL_UNUSED void jo_hex(struct jbuf *j, const char *k, uint64_t v)
{
    jo_key(j, k);
    jb_printf(j, "\"0x%" PRIx64 "\"", v);
}

static WL_UNUSED void jo_bool(struct jbuf *j, const char *k, int v)
{
    jo_key(j, k);
    jb_raw(j, v ? "true" : "false");
}

static WL_UNUSED void jo_null(struct jbuf *j, const char *k)
{
    jo_key(j, k);
    jb_raw(j, "null");
}

static WL_UNUSED void jo_errno(struct jbuf *j, int e)
{
    jo_int(j, "errno", e);
    jo_str(j, "errno_name", errno_name(e));
}

/* Array helpers: ja_begin after jo_key, then ja_sep before each element. */
static WL_UNUSED void ja_begin(struct jbuf *j)
{
    jb_raw(j, "[");
    j->first = 1;
}

static WL_UNUSED void ja_sep(struct jbuf *j)
{
    if (!j->first) {
        jb_reserve(j, 1);
        j->p[j->len++] = ',';
        j->p[j->len] = 0;
    }
    j->first = 0;
}

/* Fast integer append (used for arrays of up to millions of entries). */
static WL_UNUSED void jb_i64(struct jbuf *j, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    jb_reserve(j, (size_t)n + 1);
    char *o = j->p + j->len;
    if (v < 0)
        *o++ = '-';
    while (n)
        *o++ = tmp[--n];
    *o = 0;
    j->len = (size_t)(o - j->p);
}

static WL_UNUSED void jb_u64(struct jbuf *j, uint64_t u)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (u % 10));
        u /= 10;
    } while (u);
    jb_reserve(j, (size_t)n);
    char *o = j->p + j->len;
    while (n)
        *o++ = tmp[--n];
    *o = 0;
    j->len = (size_t)(o - j->p);
}

/* Close an array; the enclosing object then has members already. */
static WL_UNUSED void ja_end(struct jbuf *j)
{
    jb_raw(j, "]");
    j->first = 0;
}

static WL_UNUSED void jo_end(struct jbuf *j)
{
    jb_raw(j, "}");
}

/* Output held back until the program ends (wl_hold_output): a result
 * written while the harness measures would make the reader of our stdout
 * (the SSH server) grow its buffers, and fault in pages the step's
 * snapshots then count. */
static char *wl_held;
static size_t wl_held_len, wl_held_cap;

static WL_UNUSED void wl_release_output(void)
{
    if (wl_held_len) {
        fwrite(wl_held, 1, wl_held_len, stdout);
        wl_held_len = 0;
    }
    fflush(stdout);
}

/* Hold every result in a buffer of CAP bytes, faulted in now; written out
 * by wl_release_output() (at exit, on an error, or when it is full). */
static WL_UNUSED void wl_hold_output(size_t cap)
{
    wl_held = malloc(cap);
    if (!wl_held)
        return;
    memset(wl_held, 0, cap);
    wl_held_cap = cap;
    atexit(wl_release_output);
}

/* Print "PREFIX <json>\n" on stdout and flush (or hold it). */
static WL_UNUSED void jb_emit(const char *prefix, struct jbuf *j)
{
    size_t need = strlen(prefix) + 1 + j->len + 1;
    if (wl_held && need > wl_held_cap - wl_held_len)
        wl_release_output();
    if (wl_held && need <= wl_held_cap - wl_held_len) {
        wl_held_len += (size_t)sprintf(wl_held + wl_held_len, "%s ", prefix);
        memcpy(wl_held + wl_held_len, j->p, j->len);
        wl_held_len += j->len;
        wl_held[wl_held_len++] = '\n';
        return;
    }
    fputs(prefix, stdout);
    fputc(' ', stdout);
    fwrite(j->p, 1, j->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static WL_UNUSED void emit_result(struct jbuf *j)
{
    jo_end(j);
    jb_emit("RESULT", j);
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */

/* Called before exiting on an ERROR (e.g. to kill children). */
static WL_UNUSED void (*wl_cleanup_hook)(void);
/* Line number of the script command being run (0: none). */
static WL_UNUSED long wl_line;

/*
 * Print ERROR {"cmd":cmd,"message":...[,"errno":..]} and exit(code).
 * code 2: bad command line / script; code 3: unexpected syscall failure
 * (err = the errno, 0 for none).
 */
static WL_UNUSED __attribute__((noreturn, format(printf, 4, 5))) void wl_fail(int code, const char *cmd, int err, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    struct jbuf j = {0};
    jo_begin(&j);
    jo_str(&j, "cmd", cmd ? cmd : "");
    jo_str(&j, "message", msg);
    if (err)
        jo_errno(&j, err);
    if (wl_line > 0)
        jo_int(&j, "line", wl_line);
    jo_end(&j);
    wl_release_output();
    jb_emit("ERROR", &j);
    fprintf(stderr, "%s: %s%s%s\n", cmd ? cmd : "error", msg, err ? ": " : "", err ? strerror(err) : "");
    free(j.p);
    if (wl_cleanup_hook) {
        void (*hook)(void) = wl_cleanup_hook;
        wl_cleanup_hook = NULL;
        hook();
    }
    exit(code);
}

/* ------------------------------------------------------------------ */
/* Number parsing                                                       */

/* Decimal unsigned; returns 0 on success. */
static WL_UNUSED int parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static WL_UNUSED int parse_long(const char *s, long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* MB count -> bytes, with overflow check against size_t. */
static WL_UNUSED int mb_to_bytes(const char *s, size_t *bytes, uint64_t *mb)
{
    uint64_t v;
    if (parse_u64(s, &v) || v == 0)
        return -1;
    if (v > (uint64_t)(SIZE_MAX >> 21))
        return -1;
    *mb = v;
    *bytes = (size_t)v << 20;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Daemonizing "hold" workloads                                         */

/*
 * Fork.  The parent waits until the child reports (hold_release) that it
 * printed its RESULT, then exits 0; if the child dies first, the parent
 * exits with the child's exit code.  Returns in the child (in a new
 * session) the fd to pass to hold_release.
 */
static WL_UNUSED int hold_begin(const char *cmd)
{
    int fds[2];
    fflush(stdout);
    fflush(stderr);
    if (pipe(fds))
        wl_fail(3, cmd, errno, "pipe failed");
    pid_t pid = fork();
    if (pid < 0)
        wl_fail(3, cmd, errno, "fork failed");
    if (pid > 0) {
        close(fds[1]);
        char c;
        ssize_t n;
        do
            n = read(fds[0], &c, 1);
        while (n < 0 && errno == EINTR);
        if (n == 1)
            _exit(0);
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (WIFEXITED(st))
            _exit(WEXITSTATUS(st) ? WEXITSTATUS(st) : 3);
        fprintf(stderr, "%s: held child died (status 0x%x)\n", cmd, st);
        _exit(3);
    }
    close(fds[0]);
    setsid();
    if (chdir("/")) {
        /* harmless */
    }
    return fds[1];
}

/* Point stdin, stdout and stderr at /dev/null (or close them). */
static WL_UNUSED void null_stdio(void)
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    } else {
        close(0);
        close(1);
        close(2);
    }
}

/* In the child: the RESULT line is out; detach from stdio and tell the
 * parent it may exit. */
static WL_UNUSED void hold_release(int fd)
{
    fflush(stdout);
    fflush(stderr);
    null_stdio();
    char c = 'k';
    ssize_t n;
    do
        n = write(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    close(fd);
}

static WL_UNUSED __attribute__((noreturn)) void hold_forever(void)
{
    for (;;)
        pause();
}

/* A held workload's check of its own memory: pages checked, pages that
 * lost their content, and the first of those. */
typedef uint64_t (*wl_check_fn)(const void *ctx, uint64_t *checked, uint64_t *first_bad);

static volatile sig_atomic_t wl_verify_asked;

static void wl_on_usr1(int sig)
{
    (void)sig;
    wl_verify_asked = 1;
}

/* A held workload's second service: on SIGUSR2 it changes its memory
 * (e.g. frees every other page) and describes what it did in ``result``. */
typedef void (*wl_action_fn)(void *ctx, struct jbuf *result);

static volatile sig_atomic_t wl_action_asked;

static void wl_on_usr2(int sig)
{
    (void)sig;
    wl_action_asked = 1;
}

/* Write one RESULT line to PATH whole (a temporary file renamed onto it). */
static WL_UNUSED void wl_write_result_file(const char *path, const char *line)
{
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f, "RESULT %s\n", line);
    fclose(f);
    rename(tmp, path);
}

/* Hold the memory; on each SIGUSR1 run the check and write
 * RESULT {"cmd":"CMD-verify","pages","errors","first_bad"} to
 * /tmp/CMD-PID.verify; on each SIGUSR2 (when ``action`` is given) run it
 * and write its RESULT {"cmd":"CMD-action", ...} to /tmp/CMD-PID.action. */
static WL_UNUSED __attribute__((noreturn)) void hold_serving(const char *cmd, wl_check_fn check, const void *ctx,
                                                             wl_action_fn action, void *actx)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = wl_on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    if (action) {
        sa.sa_handler = wl_on_usr2;
        sigaction(SIGUSR2, &sa, NULL);
    }
    char path[96], done[96];
    snprintf(path, sizeof path, "/tmp/%s-%d.verify", cmd, (int)getpid());
    snprintf(done, sizeof done, "/tmp/%s-%d.action", cmd, (int)getpid());
    for (;;) {
        while (!wl_verify_asked && !wl_action_asked)
            pause();
        if (wl_action_asked) {
            wl_action_asked = 0;
            struct jbuf j = {0};
            char name[64];
            snprintf(name, sizeof name, "%s-action", cmd);
            jo_begin(&j);
            jo_str(&j, "cmd", name);
            action(actx, &j);
            jo_end(&j);
            wl_write_result_file(done, j.p);
            free(j.p);
        }
        if (wl_verify_asked) {
            wl_verify_asked = 0;
            uint64_t checked = 0, first_bad = 0;
            uint64_t errors = check(ctx, &checked, &first_bad);
            char line[192];
            if (errors)
                snprintf(line, sizeof line, "{\"cmd\":\"%s-verify\",\"pages\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"first_bad\":%" PRIu64 "}",
                         cmd, checked, errors, first_bad);
            else
                snprintf(line, sizeof line, "{\"cmd\":\"%s-verify\",\"pages\":%" PRIu64 ",\"errors\":0,\"first_bad\":null}", cmd,
                         checked);
            wl_write_result_file(path, line);
        }
    }
}

static WL_UNUSED __attribute__((noreturn)) void hold_verifying(const char *cmd, wl_check_fn check, const void *ctx)
{
    hold_serving(cmd, check, ctx, NULL, NULL);
}

/* mask = {node}; -1 (EINVAL) for a node out of range. */
static WL_UNUSED int wl_node_mask(unsigned long mask[WL_NODEMASK_LONGS], int node)
{
    memset(mask, 0, WL_NODEMASK_LONGS * sizeof mask[0]);
    if (node < 0 || node >= WL_NODEMASK_BITS) {
        errno = EINVAL;
        return -1;
    }
    mask[(unsigned)node / WL_BITS_PER_LONG] |= 1UL << ((unsigned)node % WL_BITS_PER_LONG);
    return 0;
}

/* mbind(addr, len, MPOL_BIND, {node}, maxnode, flags). */
static WL_UNUSED long wl_mbind_node(void *addr, size_t len, int node, unsigned flags)
{
    unsigned long mask[WL_NODEMASK_LONGS];
    if (wl_node_mask(mask, node))
        return -1;
    return syscall(SYS_mbind, addr, (unsigned long)len, (unsigned long)WL_MPOL_BIND, mask, WL_MAXNODE,
                   (unsigned long)flags);
}

/* set_mempolicy(MPOL_BIND, {node}) for the task. */
static WL_UNUSED long wl_bind_task(int node)
{
    unsigned long mask[WL_NODEMASK_LONGS];
    if (wl_node_mask(mask, node))
        return -1;
    return syscall(SYS_set_mempolicy, (unsigned long)WL_MPOL_BIND, mask, WL_MAXNODE);
}

/* ------------------------------------------------------------------ */
/* /proc/self/pagemap                                                   */

/* The pagemap entries of the `pages` pages from `addr` (page-aligned) into
 * ent[], read 4096 entries (16 MiB of address space) at a time: each
 * pread() of pagemap sets up a page walk of its own, which costs tens of
 * microseconds on TCG, so one read per page made a hog of 800 MiB spend
 * seconds here.  The same entries as one pread() per page.  0, or -1 with
 * errno set when a read failed or came back short (EIO). */
static WL_UNUSED int wl_pagemap(int fd, uintptr_t addr, size_t pages, uint64_t *ent)
{
    for (size_t done = 0; done < pages;) {
        size_t cnt = pages - done > 4096 ? 4096 : pages - done;
        ssize_t n = pread(fd, ent + done, cnt * 8, (off_t)((uint64_t)(addr / WL_PAGE_SIZE + done) * 8));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if ((size_t)n != cnt * 8) {
            errno = EIO;
            return -1;
        }
        done += cnt;
    }
    return 0;
}

#endif /* WORKLOADS_COMMON_H */
