/* Row 2 and row 11: creates private segments in a loop (at most argv[1],
 * 0 for no limit; argv[2] microseconds apart, default 0), printing each id,
 * never removing any. */
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <sys/ipc.h>
#include <sys/shm.h>

int main(int argc, char **argv) {
    long max = argc > 1 ? atol(argv[1]) : 0;
    long pause = argc > 2 ? atol(argv[2]) : 0;
    setvbuf(stdout, 0, _IONBF, 0);
    for (long i = 0; max == 0 || i < max; i++) {
        int id = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
        if (id < 0) { perror("shmget"); return 1; }
        printf("created %d\n", id);
        if (pause) usleep(pause);
    }
    return 0;
}
