/* The process the latency benchmark has killed: it only waits. alarm() ends it after
 * a few seconds should nothing kill it (the driver then counts a miss). Its argv
 * carries the banned token; it never reads it. */
#include <signal.h>
#include <unistd.h>

int main(void)
{
	alarm(5);
	for (;;)
		pause();
}
