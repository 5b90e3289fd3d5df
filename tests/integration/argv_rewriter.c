/* Test helper: a process that changes its own command line after it started, the way a
 * miner hides behind a harmless exec. Its argv[1] is a placeholder of the same length as
 * the string in $REWRITE_TO; after start it overwrites the placeholder in place (so
 * /proc/<pid>/cmdline shows the new text), prints "rewritten" and sleeps. The exec event
 * saw only the placeholder: only a /proc sweep can catch it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
  const char* to = getenv("REWRITE_TO");
  if (argc < 2 || to == NULL || strlen(to) > strlen(argv[1])) {
    fprintf(stderr, "usage: REWRITE_TO=text argv_rewriter <placeholder at least as long>\n");
    return 2;
  }
  size_t n = strlen(argv[1]);
  memset(argv[1], ' ', n);
  memcpy(argv[1], to, strlen(to));
  printf("rewritten\n");
  fflush(stdout);
  for (int i = 0; i < 600; ++i) sleep(1);
  return 0;
}
