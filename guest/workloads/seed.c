/*
 * seed: credit a per-run random seed to the kernel's entropy pool so that
 * getrandom() stops blocking on a quiet v5.0 guest (no jitter entropy).
 *
 *   seed [--reseed] FILE
 *
 * Reads up to 512 bytes of FILE ("-": standard input; at least 32 needed)
 * and passes them to ioctl(/dev/urandom, RNDADDENTROPY) crediting 8 bits
 * per byte.  With --reseed, then ioctl(RNDRESEEDCRNG): the CRNG (and each
 * node's) takes its next output from a pool holding those bytes, as a
 * guest restored from a saved one needs (a write or a credit alone leaves
 * an initialised CRNG on its old key until its 300 s reseed interval, so
 * every restored guest would read the same bytes).  Silent on success
 * (exit 0); a message on stderr and exit 1 on failure.
 */
#include "common.h"

#include <sys/ioctl.h>
#include <linux/random.h>

#ifndef RNDRESEEDCRNG
#define RNDRESEEDCRNG _IO('R', 0x07)
#endif

#define SEED_MAX 512
#define SEED_MIN 32

int main(int argc, char **argv)
{
    int reseed = argc == 3 && !strcmp(argv[1], "--reseed");
    if (argc != 2 + reseed) {
        fprintf(stderr, "usage: seed [--reseed] FILE\n");
        return 1;
    }
    const char *path = argv[1 + reseed];
    int fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC) : 0;
    if (fd < 0) {
        fprintf(stderr, "seed: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    union {
        struct rand_pool_info info;
        unsigned char raw[sizeof(struct rand_pool_info) + SEED_MAX + sizeof(uint32_t)];
    } req;
    memset(&req, 0, sizeof req);
    unsigned char *buf = (unsigned char *)req.info.buf;
    size_t len = 0;
    while (len < SEED_MAX) {
        ssize_t n = read(fd, buf + len, SEED_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "seed: read %s: %s\n", path, strerror(errno));
            close(fd);
            return 1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len < SEED_MIN) {
        fprintf(stderr, "seed: %s has %zu bytes, need at least %d\n", path, len, SEED_MIN);
        return 1;
    }
    req.info.entropy_count = (int)(8 * len);
    req.info.buf_size = (int)len;
    int rfd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (rfd < 0)
        rfd = open("/dev/random", O_WRONLY | O_CLOEXEC);
    if (rfd < 0) {
        fprintf(stderr, "seed: cannot open /dev/urandom: %s\n", strerror(errno));
        return 1;
    }
    if (ioctl(rfd, RNDADDENTROPY, &req.info) < 0) {
        int e = errno;
        fprintf(stderr, "seed: ioctl(RNDADDENTROPY): %s (%s)\n", strerror(e), errno_name(e));
        close(rfd);
        return 1;
    }
    if (reseed && ioctl(rfd, RNDRESEEDCRNG) < 0) {
        int e = errno;
        fprintf(stderr, "seed: ioctl(RNDRESEEDCRNG): %s (%s)\n", strerror(e), errno_name(e));
        close(rfd);
        return 1;
    }
    close(rfd);
    return 0;
}
