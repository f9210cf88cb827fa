/*
 * uds: a stream Unix-socket server and client for the examples' base image
 * (localhost/devbox-busybox), whose busybox has none (its nc cannot do -U).
 * scripts/setup-engines builds it static: gcc -static -Os -o uds scripts/uds.c
 *
 *   uds listen PATH PROG [ARG...]
 *       Listens on PATH (a stale socket there is replaced; any other file is an error)
 *       and runs PROG for each connection, with the connection as its stdin and stdout.
 *   uds connect [-t SECONDS] PATH
 *       Connects to PATH, sends all of stdin, half-closes, and prints the answer until
 *       the server closes. Exit 1 when it cannot connect or the answer does not end
 *       within SECONDS (default 5).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int usage(void) {
    fputs("usage: uds listen PATH PROG [ARG...]\n"
          "       uds connect [-t SECONDS] PATH\n",
          stderr);
    return 2;
}

static int address(const char *path, struct sockaddr_un *sa) {
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        fprintf(stderr, "uds: %s: path too long for a Unix socket\n", path);
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

static int write_all(int fd, const char *buf, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int do_listen(const char *path, char **prog) {
    struct sockaddr_un sa;
    struct stat st;
    if (address(path, &sa) < 0)
        return 1;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "uds: %s exists and is not a socket\n", path);
            return 1;
        }
        if (unlink(path) < 0) {
            fprintf(stderr, "uds: removing the old socket %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(s, 16) < 0) {
        fprintf(stderr, "uds: listening on %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* Children are reaped by the kernel. */
    struct sigaction ign = {.sa_handler = SIG_IGN, .sa_flags = SA_NOCLDWAIT};
    sigaction(SIGCHLD, &ign, NULL);
    for (;;) {
        int c = accept4(s, NULL, NULL, 0);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            fprintf(stderr, "uds: accepting on %s: %s\n", path, strerror(errno));
            return 1;
        }
        pid_t pid = fork();
        if (pid == 0) {
            struct sigaction dfl = {.sa_handler = SIG_DFL};
            sigaction(SIGCHLD, &dfl, NULL);
            if (dup2(c, 0) < 0 || dup2(c, 1) < 0)
                _exit(126);
            if (c > 1)
                close(c);
            execvp(prog[0], prog);
            fprintf(stderr, "uds: running %s: %s\n", prog[0], strerror(errno));
            _exit(127);
        }
        if (pid < 0)
            fprintf(stderr, "uds: fork: %s\n", strerror(errno));
        close(c);
    }
}

static long long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int do_connect(const char *path, double seconds) {
    struct sockaddr_un sa;
    char buf[65536];
    if (address(path, &sa) < 0)
        return 1;
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "uds: connecting to %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* A server that never reads must not keep the client past its deadline either. */
    signal(SIGPIPE, SIG_IGN);
    long long deadline = now_ms() + (long long)(seconds * 1000);
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        if (write_all(s, buf, (size_t)n) < 0) {
            fprintf(stderr, "uds: sending to %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    shutdown(s, SHUT_WR);
    for (;;) {
        long long left = deadline - now_ms();
        struct pollfd p = {.fd = s, .events = POLLIN};
        int r = left > 0 ? poll(&p, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0) {
            fprintf(stderr, "uds: no full answer from %s within %gs\n", path, seconds);
            return 1;
        }
        ssize_t n = read(s, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "uds: reading from %s: %s\n", path, strerror(errno));
            return 1;
        }
        if (n == 0)
            return 0;
        if (write_all(1, buf, (size_t)n) < 0) {
            fprintf(stderr, "uds: writing the answer: %s\n", strerror(errno));
            return 1;
        }
    }
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "listen") == 0)
        return do_listen(argv[2], argv + 3);
    if (argc >= 3 && strcmp(argv[1], "connect") == 0) {
        double seconds = 5;
        int i = 2;
        if (strcmp(argv[i], "-t") == 0) {
            char *end;
            if (argc != 5)
                return usage();
            seconds = strtod(argv[3], &end);
            if (*end != '\0' || !(seconds > 0)) {
                fprintf(stderr, "uds: -t %s: not a positive number of seconds\n", argv[3]);
                return 2;
            }
            i = 4;
        }
        if (argc != i + 1)
            return usage();
        return do_connect(argv[i], seconds);
    }
    return usage();
}
