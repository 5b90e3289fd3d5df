// Container id, runtime and pod UID from cgroup names as each runtime and cgroup driver
// writes them (paths as seen on real nodes; ids and UIDs made up).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cryptnono/exporter/container.h"

namespace cryptnono::exporter {
namespace {

const std::string kId = "9b1f4c2e7a5d3b8f0e6c1a4d7b2e5f8c3a6d9b0e1f4c7a2d5b8e3f6c9a0d1b4e";
const std::string kUid = "d2ed6416-812f-413b-ba53-e62d11646809";
const std::string kUidSystemd = "d2ed6416_812f_413b_ba53_e62d11646809";

struct Case {
  const char* what;
  std::string cgroup;
  std::string runtime;
  std::string container_type;
  std::string container_id;
  std::string pod_uid;
};

TEST(ParseCgroup, KnowsEveryRuntimeAndDriver) {
  const Case cases[] = {
      {"containerd, systemd driver, burstable",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId +
           ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, as the collector sends it (last four components)",
       "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId +
           ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, truncated to three components",
       "kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope",
       "containerd", "cri", kId, kUid},
      {"containerd, systemd driver, guaranteed QoS (no QoS slice)",
       "/kubepods.slice/kubepods-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope", "containerd", "cri",
       kId, kUid},
      {"containerd or CRI-O, cgroupfs driver, burstable", "/kubepods/burstable/pod" + kUid + "/" + kId, "", "cri", kId,
       kUid},
      {"cgroupfs driver, guaranteed QoS", "/kubepods/pod" + kUid + "/" + kId, "", "cri", kId, kUid},
      {"CRI-O, systemd driver",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/crio-" + kId +
           ".scope",
       "cri-o", "cri", kId, kUid},
      {"CRI-O, cgroupfs driver", "/kubepods/besteffort/pod" + kUid + "/crio-" + kId, "cri-o", "cri", kId, kUid},
      {"CRI-O conmon is not the container",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + kUidSystemd + ".slice/crio-conmon-" +
           kId + ".scope",
       "", "", "", kUid},
      {"Docker, systemd driver", "/system.slice/docker-" + kId + ".scope", "docker", "docker", kId, ""},
      {"Docker, cgroupfs driver", "/docker/" + kId, "docker", "docker", kId, ""},
      {"Docker under Kubernetes (cri-dockerd), systemd driver",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice/docker-" + kId +
           ".scope",
       "docker", "docker", kId, kUid},
      {"podman", "/machine.slice/libpod-" + kId + ".scope", "podman", "podman", kId, ""},
      {"podman conmon is not the container", "/machine.slice/libpod-conmon-" + kId + ".scope", "", "", "", ""},
      {"a nested cgroup inside a container maps to the container",
       "kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kId + ".scope/init.scope", "containerd",
       "cri", kId, kUid},
      {"a static pod's UID is a 32-hex config hash",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6a0c0f5e0d7bd1e3e2a0b0c0d0e0f001.slice/"
       "cri-containerd-" + kId + ".scope",
       "containerd", "cri", kId, "6a0c0f5e0d7bd1e3e2a0b0c0d0e0f001"},
      {"the pod slice itself is not a container",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd + ".slice", "", "", "", kUid},
      {"containerd outside Kubernetes (namespace default)", "/default/" + kId, "", "", kId, ""},
  };
  for (const auto& c : cases) {
    auto ref = parse_cgroup(c.cgroup);
    EXPECT_EQ(ref.runtime, c.runtime) << c.what;
    EXPECT_EQ(ref.container_type, c.container_type) << c.what;
    EXPECT_EQ(ref.container_id, c.container_id) << c.what;
    EXPECT_EQ(ref.pod_uid, c.pod_uid) << c.what;
  }
}

TEST(ParseCgroup, HostProcessesAreNotContainers) {
  for (std::string cgroup : {"/user.slice/user-1000.slice/session-3.scope", "/system.slice/sshd.service",
                             "/system.slice/podman.service", "/init.scope", "/", "", "kubepods.slice"}) {
    auto ref = parse_cgroup(cgroup);
    EXPECT_EQ(ref.container_id, "") << cgroup;
    EXPECT_EQ(ref.container_type, "") << cgroup;
    EXPECT_EQ(ref.pod_uid, "") << cgroup;
  }
}

TEST(ParseCgroup, RejectsAlmostIdsAndSurvivesGarbage) {
  std::string upper = kId;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (std::string cgroup : {"/docker/" + kId.substr(1), "/docker/" + kId + "0", "/docker/" + upper,
                             std::string("/system.slice/cri-containerd-.scope"), std::string("////"),
                             "/kubepods/burstable/podnot-a-uid/" + kId.substr(2),
                             std::string("/kubepods/pod") + std::string(36, '_') + "/x"}) {
    auto ref = parse_cgroup(cgroup);
    EXPECT_EQ(ref.container_id, "") << cgroup;
  }
  EXPECT_EQ(parse_cgroup("/kubepods/pod" + std::string(36, '_') + "/" + kId).pod_uid, "");
  EXPECT_EQ(parse_cgroup("/kubepods/pod" + kUid.substr(0, 35) + "g/" + kId).pod_uid, "");
  std::string huge(1 << 20, '/');
  for (size_t i = 0; i < huge.size(); i += 3) huge[i] = static_cast<char>(i * 31);
  auto ref = parse_cgroup(huge);  // must just return
  EXPECT_LE(ref.container_id.size(), 64u);
}

TEST(ParseCgroup, DockerInDockerUnderAPodLooksUpTheInnerContainer) {
  const std::string kOuter = "77aa" + kId.substr(4);
  const struct {
    const char* what;
    std::string cgroup;
  } cases[] = {
      {"cgroupfs driver", "/kubepods/burstable/pod" + kUid + "/" + kOuter + "/docker/" + kId},
      {"systemd driver", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kUidSystemd +
                             ".slice/cri-containerd-" + kOuter + ".scope/docker/" + kId},
      {"as the collector sends it (last four components)",
       "kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kOuter + ".scope/docker/" + kId},
      {"inner dockerd with the systemd driver",
       "kubepods-burstable-pod" + kUidSystemd + ".slice/cri-containerd-" + kOuter + ".scope/system.slice/docker-" + kId +
           ".scope"},
  };
  for (const auto& c : cases) {
    auto ref = parse_cgroup(c.cgroup);
    EXPECT_EQ(ref.container_id, kId) << c.what;
    EXPECT_EQ(ref.runtime, "docker") << c.what;
    EXPECT_EQ(ref.container_type, "docker") << c.what;
    EXPECT_EQ(ref.pod_uid, kUid) << c.what;
    EXPECT_EQ(ref.outer_container_id, kOuter) << c.what;
  }
  // Cut below the pod's container, the inner container is still found (no outer, no pod).
  auto cut = parse_cgroup("docker/" + kId);
  EXPECT_EQ(cut.container_id, kId);
  EXPECT_EQ(cut.outer_container_id, "");
  // A container nested in its own scope is one container, not Docker-in-Docker.
  EXPECT_EQ(parse_cgroup("/system.slice/docker-" + kId + ".scope/" + kId).outer_container_id, "");
}

// Every fixture under tests/fixtures/cgroups is a /proc/<pid>/cgroup file as a node of
// that kind shows it, with the expected answer in a "# expect:" line. The collector sends
// the unified (v2, "0::") path cut to its last four components: both forms must parse
// to the expected container.
TEST(ParseCgroup, FixturesFromEachRuntime) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(CRYPTNONO_FIXTURES_DIR "/cgroups")) {
    if (entry.path().extension() == ".cgroup") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_GE(files.size(), 15u) << "fixtures missing from " << CRYPTNONO_FIXTURES_DIR;
  std::set<std::string> runtimes_seen;
  for (const auto& file : files) {
    std::ifstream in(file);
    std::string line, unified;
    std::map<std::string, std::string> expect;
    while (std::getline(in, line)) {
      if (line.rfind("# expect:", 0) == 0) {
        std::istringstream fields(line.substr(9));
        std::string field;
        while (fields >> field) {
          auto eq = field.find('=');
          expect[field.substr(0, eq)] = field.substr(eq + 1);
        }
      } else if (line.rfind("0::", 0) == 0) {
        unified = line.substr(3);
      }
    }
    ASSERT_EQ(expect.size(), 5u) << file << ": needs runtime, container_type, container_id, pod_uid, outer_container_id";
    ASSERT_FALSE(unified.empty()) << file << ": no 0:: line";
    // What the collector sends: the last EXEC_CGROUP_DEPTH (4) components, no leading '/'.
    std::vector<std::string> parts;
    for (size_t pos = 1; pos <= unified.size();) {
      size_t slash = unified.find('/', pos);
      if (slash == std::string::npos) slash = unified.size();
      if (slash > pos) parts.push_back(unified.substr(pos, slash - pos));
      pos = slash + 1;
    }
    std::string sent;
    for (size_t i = parts.size() > 4 ? parts.size() - 4 : 0; i < parts.size(); ++i) {
      sent += (sent.empty() ? "" : "/") + parts[i];
    }
    for (const auto& name : {unified, sent}) {
      auto ref = parse_cgroup(name);
      std::string what = file.filename().string() + " <" + name + ">";
      EXPECT_EQ(ref.runtime, expect["runtime"]) << what;
      EXPECT_EQ(ref.container_type, expect["container_type"]) << what;
      EXPECT_EQ(ref.container_id, expect["container_id"]) << what;
      EXPECT_EQ(ref.pod_uid, expect["pod_uid"]) << what;
      EXPECT_EQ(ref.outer_container_id, expect["outer_container_id"]) << what;
    }
    runtimes_seen.insert(expect["runtime"]);
  }
  EXPECT_TRUE(runtimes_seen.count("containerd") && runtimes_seen.count("cri-o") && runtimes_seen.count("docker") &&
              runtimes_seen.count("podman"));
}

TEST(NoopEnricher, GivesEmptyLabelsAndImageAtOnce) {
  NoopEnricher enricher;
  auto e = enricher.try_enrich(parse_cgroup("/docker/" + kId));
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->labels.empty());
  EXPECT_EQ(e->image, "");
  EXPECT_EQ(e->failure, "");
  EXPECT_EQ(enricher.ready_fd(), -1);
}

}  // namespace
}  // namespace cryptnono::exporter
