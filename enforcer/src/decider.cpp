#include "cryptnono/enforcer/decider.h"

#include "cryptnono/clock.h"
#include "cryptnono/enforcer/text.h"

namespace cryptnono::enforcer {

namespace {

std::string_view as_view(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

kj::ArrayPtr<const kj::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}

EventIdentity identity_of(const ExecView& e) { return {e.pidfs_ino, e.exe_ino, e.exe_dev}; }

}  // namespace

ExecView view_of(schema::ExecEvent::Reader event) {
  ExecView v;
  v.source = event.getSource();
  v.pid = event.getPid();
  v.tgid = event.getTgid();
  v.ppid = event.getPpid();
  v.uid = event.getUid();
  v.gid = event.getGid();
  v.start_boot_ns = event.getStartBootNs();
  v.exec_boot_ns = event.getExecBootNs();
  v.comm = event.getComm();
  v.filename = as_view(event.getFilename());
  v.argv = as_view(event.getArgv());
  v.argv_truncated = event.getArgvTruncated();
  v.argv_full_length = event.getArgvFullLength();
  v.cgroup_id = event.getCgroupId();
  v.cgroup_name = event.getCgroupName();
  v.mnt_ns = event.getMntNs();
  v.pid_ns = event.getPidNs();
  v.cpu = event.getCpu();
  v.pidfs_ino = event.getPidfsIno();
  v.exe_ino = event.getExeIno();
  v.exe_dev = event.getExeDev();
  return v;
}

void copy_event(const ExecView& v, schema::ExecEvent::Builder out, bool with_argv) {
  out.setSource(v.source);
  out.setPid(v.pid);
  out.setTgid(v.tgid);
  out.setPpid(v.ppid);
  out.setUid(v.uid);
  out.setGid(v.gid);
  out.setStartBootNs(v.start_boot_ns);
  out.setExecBootNs(v.exec_boot_ns);
  out.setComm(v.comm);
  out.setFilename(as_bytes(v.filename));
  if (with_argv) out.setArgv(as_bytes(v.argv));
  out.setArgvTruncated(v.argv_truncated);
  out.setArgvFullLength(v.argv_full_length);
  out.setCgroupId(v.cgroup_id);
  out.setCgroupName(v.cgroup_name);
  out.setMntNs(v.mnt_ns);
  out.setPidNs(v.pid_ns);
  out.setPidfsIno(v.pidfs_ino);
  out.setExeIno(v.exe_ino);
  out.setExeDev(v.exe_dev);
  out.setCpu(v.cpu);
}

void Decider::build_cmdline(const ExecView& event, std::string_view argv) {
  // Exec events: the exec'd filename then argv[1:], as cryptnono logs "/usr/bin/sh -c ..."
  // for "sh -c ...". Sweeps: argv as /proc shows it.
  if (event.source == schema::Source::BPF)
    join_fold_exec_cmdline(event.filename, argv, folded_, joined_);
  else
    join_fold_proc_cmdline(argv, folded_, joined_);
}

void Decider::act_on(const KillOutcome& outcome) {
  switch (outcome.status) {
    case KillStatus::kOk:
      break;
    case KillStatus::kExited:
    case KillStatus::kReused:
      verdict_.action = schema::Action::MISSED_KILL;
      verdict_.reason = outcome.reason;
      break;
    case KillStatus::kProtected:
      verdict_.action = schema::Action::SPARED;
      verdict_.reason = outcome.reason;
      break;
    case KillStatus::kError:
      verdict_.action = schema::Action::ERROR;
      verdict_.reason = outcome.reason;
      break;
  }
}

const Verdict& Decider::decide(const ExecView& event, Matcher& matcher) {
  verdict_.action = schema::Action::NO_MATCH;
  verdict_.matched = {};
  verdict_.allowed_by = {};
  verdict_.reason.clear();
  verdict_.cmdline_from_proc = false;
  verdict_.killed_boot_ns = 0;
  verdict_.exited_boot_ns = 0;

  // Identity is the tgid with the pidfs inode or, without one, the start time; the pidfd
  // must name the thread-group leader.
  pid_t pid = static_cast<pid_t>(event.tgid != 0 ? event.tgid : event.pid);
  build_cmdline(event, event.argv);

  Opened opened;
  bool have_opened = false;
  if (event.argv_truncated) {
    // What the event carries is only the start of the arguments: a banned string may
    // lie beyond it. Verify the process first, then read everything it has.
    opened = killer_.open(pid, event.start_boot_ns, identity_of(event));
    have_opened = true;
    if (opened.outcome.status == KillStatus::kOk) {
      auto read = opened.target->read_cmdline(proc_argv_);
      if (read.status == KillStatus::kOk) {
        build_cmdline(event, proc_argv_);
        verdict_.cmdline_from_proc = true;
      } else {
        opened.outcome = read;
        opened.target.reset();
      }
    }
  }

  Matcher::Match m = matcher.match(folded_);
  verdict_.decided_boot_ns = boot_ns();
  if (m.scan_failed) {
    verdict_.action = schema::Action::ERROR;
    verdict_.reason = "matcher scan failed";
    return verdict_;
  }
  if (!m.found()) {
    if (have_opened && !verdict_.cmdline_from_proc)
      verdict_.reason = "argv truncated and the full command line could not be read: " + opened.outcome.reason;
    return verdict_;
  }
  verdict_.matched = matcher.banned(static_cast<size_t>(m.banned));
  if (m.allowed >= 0) {
    verdict_.action = schema::Action::SPARED;
    verdict_.allowed_by = matcher.allowed_pattern(static_cast<size_t>(m.allowed));
    return verdict_;
  }

  if (!have_opened) opened = killer_.open(pid, event.start_boot_ns, identity_of(event));
  if (opened.outcome.status != KillStatus::kOk) {
    act_on(opened.outcome);
    return verdict_;
  }
  if (dry_run_) {
    verdict_.action = schema::Action::WOULD_KILL;
    return verdict_;
  }
  auto sent = opened.target->kill();
  if (sent.status == KillStatus::kOk) {
    verdict_.killed_boot_ns = boot_ns();
    verdict_.action = schema::Action::KILLED;
    verdict_.exited_boot_ns = opened.target->wait_exited();
    return verdict_;
  }
  act_on(sent);
  return verdict_;
}

}  // namespace cryptnono::enforcer
