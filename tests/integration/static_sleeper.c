/* A statically linked program (no dynamic loader, no libc.so): sleeps for argv[1]
 * seconds and ignores every other argument. The hostile-input tests exec it with a
 * banned string among its arguments to show static binaries are seen and judged like
 * any other exec (the probe sits at sched_process_exec, after the binary is loaded). */
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
  struct timespec ts = {argc > 1 ? atoi(argv[1]) : 5, 0};
  while (nanosleep(&ts, &ts) != 0) {
  }
  return 0;
}
