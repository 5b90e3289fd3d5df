// Compiles a Vectorscan literal database in a short-lived child process and hands the
// serialized database back over a pipe. The compiler's working memory (about 20 times the
// database: ~300 MiB for 100,000 strings) then never lives in the enforcer, whose memory
// only ever holds the deserialized database; a compile the kernel kills for memory takes
// the child, not the enforcer, and the caller keeps serving its old config.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

#include <tl/expected.hpp>

struct hs_database;

namespace cryptnono::enforcer {

// Why no database came back. `expression` is the index (into the arrays passed in) of the
// literal Vectorscan rejected, or -1 when the failure concerns no single literal (the
// compiler's own limits, or the child process failing: killed, exited, a short reply).
struct CompileError {
  std::string message;
  int expression = -1;
};

// What the child process cost, for logs and tests.
struct CompileStats {
  pid_t child = -1;              // the compiler's pid (already reaped when the call returns)
  long child_max_rss_kib = 0;    // its peak resident memory (wait4's ru_maxrss)
  size_t serialized_bytes = 0;   // the bytes that crossed the pipe (0 when none)
};

// hs_compile_lit_multi(exprs, flags, ids, lens, count, mode, nullptr, ...) run in a child
// process (named "cnn-compile"); the arrays must have the same length. On success the
// caller owns the database (free it with hs_free_database). Blocks for as long as the
// compile takes (seconds for 100,000 strings): call it off the event thread. The child is
// killed if the calling thread dies, and is always reaped before this returns. Safe to
// call from any thread of a multi-threaded process (see compile_worker.cpp for why);
// concurrent calls each get their own child.
tl::expected<hs_database*, CompileError> compile_literals_isolated(const std::vector<const char*>& exprs,
                                                                    const std::vector<unsigned>& flags,
                                                                    const std::vector<unsigned>& ids,
                                                                    const std::vector<size_t>& lens, unsigned mode,
                                                                    CompileStats* stats = nullptr);

// The same compile in this process, for small sets (a reload's few new strings): a child
// costs ~100 ms here (its first allocations copy-on-write-fault through the enforcer's
// heap), while 1,000 literals compile in-process in tens of ms with ~15 MiB of working
// memory. Serialised with the forks of compile_literals_isolated (see compile_worker.cpp).
tl::expected<hs_database*, CompileError> compile_literals_here(const std::vector<const char*>& exprs,
                                                                const std::vector<unsigned>& flags,
                                                                const std::vector<unsigned>& ids,
                                                                const std::vector<size_t>& lens, unsigned mode);

}  // namespace cryptnono::enforcer
