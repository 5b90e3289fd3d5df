// Capability handling. Each stage keeps only what it needs: the collector drops every
// capability once its BPF programs are attached; the enforcer keeps CAP_KILL only.
#pragma once

#include <sys/capability.h>

#include <string>
#include <vector>

#include "cryptnono/result.h"

namespace cryptnono {

// Drops every capability except `keep` from the effective, permitted and inheritable
// sets, clears the ambient set and the bounding set (except `keep`), and sets
// no_new_privs so no later exec can regain any. Kept capabilities stay effective.
Result<void> drop_capabilities(const std::vector<cap_value_t>& keep = {});

// True when `cap` is in this process's effective set.
bool has_capability(cap_value_t cap);

// "cap_bpf,cap_perfmon" style list of the effective set, for log lines.
std::string effective_capabilities();

}  // namespace cryptnono
