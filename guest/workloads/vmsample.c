/*
 * vmsample: sample /proc/vmstat at a fixed interval while a scenario's
 * step runs, for the plots of the run's report.
 *
 *   vmsample INTERVAL_MS PREFIX[,PREFIX...] [READY_FILE] &   ...   kill -TERM $!
 *
 * Until SIGTERM (or SIGINT), every INTERVAL_MS it reads /proc/vmstat and
 * keeps the counters whose names start with one of the PREFIXes; on the
 * signal it prints every sample and exits 0:
 *
 *   SAMPLE <CLOCK_MONOTONIC in ms> name=value name=value ...
 *
 * (the monotonic clock counts from boot, like the trace buffer's default
 * clock, so samples and trace events share a time axis).
 *
 * It disturbs what it watches as little as it can: no fork, no allocation
 * after the start (a fixed buffer, populated at once; samples past its end
 * are counted, not kept), one pread of /proc/vmstat per sample.  It mlocks
 * nothing (that would move the unevictable counters the checks read).
 * Once its memory is all faulted in it creates READY_FILE, so that the
 * step's first snapshot can wait for it and not count its pages.
 */
#include "common.h"

#include <time.h>

#define BUF_BYTES (2u << 20)
#define FILE_BYTES 16384
#define MAX_PREFIXES 16

static volatile sig_atomic_t stop;
static char *buf;
static size_t used, dropped;

static void on_signal(int sig) { (void)sig; stop = 1; }

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)(t.tv_nsec / 1000000);
}

static void append(const char *s, size_t n)
{
    if (used + n < BUF_BYTES) {
        memcpy(buf + used, s, n);
        used += n;
    }
}

int main(int argc, char **argv)
{
    const char *cmd = "vmsample";
    uint64_t interval;
    if ((argc != 3 && argc != 4) || parse_u64(argv[1], &interval) || !interval)
        wl_fail(2, cmd, 0, "usage: vmsample INTERVAL_MS PREFIX[,PREFIX...] [READY_FILE]");
    char *prefixes[MAX_PREFIXES];
    size_t nprefix = 0;
    for (char *save = NULL, *p = strtok_r(argv[2], ",", &save); p && nprefix < MAX_PREFIXES; p = strtok_r(NULL, ",", &save))
        prefixes[nprefix++] = p;
    buf = mmap(NULL, BUF_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (buf == MAP_FAILED)
        wl_fail(3, cmd, errno, "mmap of the sample buffer failed");
    int fd = open("/proc/vmstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        wl_fail(3, cmd, errno, "cannot open /proc/vmstat");
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    static char file[FILE_BYTES], line[128];
    memset(file, 0, sizeof file);
    if (argc == 4) {
        int ready = open(argv[3], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (ready >= 0)
            close(ready);
    }
    while (!stop) {
        ssize_t n = pread(fd, file, sizeof file - 1, 0);
        if (n > 0) {
            file[n] = 0;
            int len = snprintf(line, sizeof line, "SAMPLE %" PRIu64, now_ms());
            size_t start = used;
            append(line, (size_t)len);
            for (char *save = NULL, *l = strtok_r(file, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                for (size_t k = 0; k < nprefix; k++)
                    if (!strncmp(l, prefixes[k], strlen(prefixes[k]))) {
                        char *sp = strchr(l, ' ');
                        if (sp) {
                            *sp = '=';
                            append(" ", 1);
                            append(l, strlen(l));
                        }
                        break;
                    }
            }
            append("\n", 1);
            if (used == start || buf[used - 1] != '\n') {
                /* the buffer is full: drop this sample whole */
                used = start;
                dropped++;
            }
        }
        struct timespec ts = {.tv_sec = (time_t)(interval / 1000), .tv_nsec = (long)(interval % 1000) * 1000000L};
        while (!stop && nanosleep(&ts, &ts) && errno == EINTR)
            ;
    }
    fwrite(buf, 1, used, stdout);
    printf("RESULT {\"cmd\":\"vmsample\",\"interval_ms\":%" PRIu64 ",\"bytes\":%zu,\"dropped\":%zu}\n", interval, used, dropped);
    fflush(stdout);
    return 0;
}
