/* Row 4: installs a seccomp filter of its own that returns
 * SECCOMP_RET_USER_NOTIF for shmget (with a listener), forks, and answers
 * the child's shmget with SECCOMP_USER_NOTIF_FLAG_CONTINUE. The child's
 * shmget(IPC_PRIVATE) then runs without the harness's SECCOMP_RET_TRACE
 * stop (USER_NOTIF outranks TRACE). Prints each step. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ipc.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
    setvbuf(stdout, 0, _IONBF, 0);
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_shmget, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {sizeof f / sizeof f[0], f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) { printf("no_new_privs: %s\n", strerror(errno)); return 1; }
    int listener = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    if (listener < 0) { printf("seccomp user-notification filter refused: %s\n", strerror(errno)); return 1; }
    printf("installed a user-notification filter for shmget, listener fd %d\n", listener);
    pid_t child = fork();
    if (child == 0) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) { printf("child: shmget: %s\n", strerror(errno)); _exit(1); }
        printf("child: created shmid %d\n", id);
        _exit(0);
    }
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    memset(&req, 0, sizeof req);
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req)) { printf("NOTIF_RECV: %s\n", strerror(errno)); return 1; }
    memset(&resp, 0, sizeof resp);
    resp.id = req.id;
    resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp)) { printf("NOTIF_SEND: %s\n", strerror(errno)); return 1; }
    printf("answered the child's shmget (syscall %d) with continue\n", req.data.nr);
    int st;
    waitpid(child, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
