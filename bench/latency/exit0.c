/* The cheapest program there is to exec: static, no libc, no dynamic loader; it calls
 * exit(0) and nothing else. exec_storm --exe runs it to reach this machine's highest
 * exec rate (a dynamically linked /bin/true spends most of its time in ld.so: ~250
 * execs/s here against ~1,200 for this). Built -static -nostdlib (bench/CMakeLists.txt). */
#if defined(__x86_64__)
__attribute__((naked, noreturn)) void _start(void)
{
	__asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall\n");
}
#elif defined(__aarch64__)
__attribute__((naked, noreturn)) void _start(void)
{
	__asm__ volatile("mov x8, #93\n\tmov x0, #0\n\tsvc #0\n");
}
#else
#error "exit0.c: add this architecture's exit system call"
#endif
