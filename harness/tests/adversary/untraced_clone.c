/* Row 5: clone(CLONE_UNTRACED) gives a child the harness's tracer does not
 * follow; the program traces that child itself (PTRACE_SEIZE with
 * PTRACE_O_TRACESECCOMP, so the harness's SECCOMP_RET_TRACE stops come here
 * and are continued), and the child creates a private segment. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    int go[2];
    if (pipe(go)) return 1;
    long child = syscall(SYS_clone, CLONE_UNTRACED | SIGCHLD, 0, 0, 0, 0);
    if (child < 0) { printf("clone(CLONE_UNTRACED): %s\n", strerror(errno)); return 1; }
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1) _exit(3);
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) { printf("untraced child: shmget: %s\n", strerror(errno)); _exit(1); }
        printf("untraced child: created shmid %d\n", id);
        _exit(0);
    }
    printf("clone(CLONE_UNTRACED) gave pid %ld\n", child);
    if (ptrace(PTRACE_SEIZE, child, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL))
        printf("PTRACE_SEIZE: %s (continuing untraced)\n", strerror(errno));
    else
        printf("tracing the child myself\n");
    if (write(go[1], "x", 1) != 1) return 1;
    for (;;) {
        int st;
        if (waitpid(child, &st, __WALL) < 0) { printf("waitpid: %s\n", strerror(errno)); return 1; }
        if (WIFEXITED(st)) return WEXITSTATUS(st);
        if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
        if (WIFSTOPPED(st)) {
            int sig = (st >> 16) ? 0 : WSTOPSIG(st);
            if ((st >> 16) == PTRACE_EVENT_SECCOMP) printf("seccomp stop of the child, continued\n");
            ptrace(PTRACE_CONT, child, 0, sig);
        }
    }
}
