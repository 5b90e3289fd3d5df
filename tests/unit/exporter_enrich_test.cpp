// Container enrichment without a real runtime (the `runtime` tier has the real one):
//  - AsyncEnricher over a scripted RuntimeClient: cache, TTL, LRU, failures, queue bound,
//    Docker-in-Docker composition;
//  - the CRI client against an in-process FAKE gRPC server speaking runtime.v1 on a unix
//    socket (our own proto; a real containerd is in tests/runtime);
//  - the Docker client against a FAKE HTTP server on a unix socket: dockerd cannot run on
//    this test tier (unit: no root, no daemon), so its answers are replayed as dockerd
//    20.10 writes them (Content-Length and chunked bodies, 404 with {"message"});
//  - the exporter loop with a scripted slow/failing runtime: lines wait, are enriched or
//    written with container-lookup-failed, and are counted.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <functional>
#include <thread>

#include <capnp/message.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cri.grpc.pb.h"
#include "cryptnono/exporter/enricher.h"
#include "cryptnono/exporter/exporter.h"
#include "cryptnono/exporter/metrics.h"
#include "cryptnono/log.h"
#include "cryptnono/transport.h"
#include "exporter_test_util.h"

namespace cryptnono::exporter {
namespace {

using namespace std::chrono_literals;
using cryptnono::testing::http_get;
using cryptnono::testing::LineReader;
using cryptnono::testing::metric_value;
using cryptnono::testing::TempDir;

const std::string kId = "4e1f0c2b3a5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
const std::string kOuterId = "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9";
const std::string kUid = "0f1e2d3c-4b5a-4968-8776-5a4b3c2d1e0f";

std::map<std::string, std::string> pod_labels(const std::string& pod, const std::string& ns) {
  return {{"io.kubernetes.container.name", "notebook"},
          {"io.kubernetes.pod.name", pod},
          {"io.kubernetes.pod.namespace", ns},
          {"io.kubernetes.pod.uid", kUid}};
}

// A runtime that answers from a script, optionally slowly, and counts what it was asked.
class ScriptedRuntime final : public RuntimeClient {
 public:
  explicit ScriptedRuntime(std::string kind) : kind_(std::move(kind)) {}
  std::string_view kind() const override { return kind_; }
  LookupResult<ContainerInfo> inspect(const std::string& id, std::chrono::milliseconds timeout) override {
    calls_++;
    std::unique_lock lock(mutex_);
    auto delay = delay_;
    lock.unlock();
    if (delay > timeout) {
      std::this_thread::sleep_for(timeout);
      return tl::unexpected(LookupError{"timeout", kind_ + ": deadline exceeded"});
    }
    std::this_thread::sleep_for(delay);
    lock.lock();
    auto it = answers_.find(id);
    if (it == answers_.end()) return tl::unexpected(LookupError{"not_found", kind_ + ": no such container " + id});
    return it->second;
  }
  void set(const std::string& id, ContainerInfo info) {
    std::lock_guard lock(mutex_);
    answers_[id] = std::move(info);
  }
  void set_delay(std::chrono::milliseconds d) {
    std::lock_guard lock(mutex_);
    delay_ = d;
  }
  std::atomic<int> calls_{0};

 private:
  std::string kind_;
  std::mutex mutex_;
  std::map<std::string, ContainerInfo> answers_;
  std::chrono::milliseconds delay_{0};
};

// Rechecks as the exporter loop does for a waiting line, waking on ready_fd.
std::optional<Enrichment> wait_answer(Enricher& e, const ContainerRef& ref, std::chrono::milliseconds limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{e.ready_fd(), POLLIN, 0};
    ::poll(&p, 1, 50);
    if (p.revents & POLLIN) e.drain();
    if (auto again = e.recheck(ref)) return again;
  }
  return std::nullopt;
}

// A new decision: try_enrich, then wait as the loop does if it has to.
std::optional<Enrichment> ask_until_answered(Enricher& e, const ContainerRef& ref, std::chrono::milliseconds limit = 5s) {
  if (auto first = e.try_enrich(ref)) return first;
  return wait_answer(e, ref, limit);
}

ContainerRef cri_ref(const std::string& id = kId) {
  return parse_cgroup("kubepods/besteffort/pod" + kUid + "/" + id);
}

struct EnricherHarness {
  explicit EnricherHarness(EnricherConfig config = {}) {
    auto c = std::make_unique<ScriptedRuntime>("cri");
    auto d = std::make_unique<ScriptedRuntime>("docker");
    cri = c.get();
    docker = d.get();
    metrics = std::make_shared<EnrichMetrics>("cryptnono", false);
    enricher = std::make_unique<AsyncEnricher>(std::move(c), std::move(d), config, metrics, nullptr);
  }
  double metric(const std::string& name, const std::map<std::string, std::string>& labels = {}) {
    return metric_value(metrics->serialize(), name, labels).value_or(-1);
  }
  ScriptedRuntime* cri;
  ScriptedRuntime* docker;
  std::shared_ptr<EnrichMetrics> metrics;
  std::unique_ptr<AsyncEnricher> enricher;
};

TEST(AsyncEnricher, LooksUpOnceThenAnswersFromTheCache) {
  EnricherHarness h;
  h.cri->set(kId, {pod_labels("jupyter-alice", "hub-a"), "quay.io/2i2c/image:67523d9ea855"});
  auto ref = cri_ref();
  ASSERT_EQ(ref.container_type, "cri");
  EXPECT_FALSE(h.enricher->try_enrich(ref).has_value()) << "the first ask must not block on the runtime";
  auto e = wait_answer(*h.enricher, ref);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->labels, pod_labels("jupyter-alice", "hub-a"));
  EXPECT_EQ(e->image, "quay.io/2i2c/image:67523d9ea855");
  EXPECT_EQ(e->failure, "");
  for (int i = 0; i < 100; ++i) {
    auto cached = h.enricher->try_enrich(ref);
    ASSERT_TRUE(cached);
    EXPECT_EQ(cached->labels.at("io.kubernetes.pod.name"), "jupyter-alice");
  }
  EXPECT_EQ(h.cri->calls_.load(), 1);
  EXPECT_EQ(h.docker->calls_.load(), 0);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_lookups_total", {{"runtime", "cri"}}), 1);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_cache_misses_total"), 1);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_cache_hits_total"), 100);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_lookup_seconds_count", {{"runtime", "cri"}}), 1);
}

TEST(AsyncEnricher, FailuresAreAnswersCachedBrieflyThenRetried) {
  EnricherConfig config;
  config.failure_ttl = 1s;
  EnricherHarness h(config);
  auto ref = cri_ref();
  auto e = ask_until_answered(*h.enricher, ref);
  ASSERT_TRUE(e);
  EXPECT_NE(e->failure.find("no such container"), std::string::npos) << e->failure;
  EXPECT_TRUE(e->labels.empty());
  ASSERT_TRUE(h.enricher->try_enrich(ref));  // cached failure: no second call
  EXPECT_EQ(h.cri->calls_.load(), 1);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_lookup_failures_total", {{"runtime", "cri"}, {"reason", "not_found"}}),
            1);
  // After the failure TTL the runtime is asked again (the container may have appeared).
  h.cri->set(kId, {pod_labels("p", "n"), "img:1"});
  std::this_thread::sleep_for(1100ms);
  auto later = ask_until_answered(*h.enricher, ref);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->failure, "");
  EXPECT_EQ(later->image, "img:1");
  EXPECT_EQ(h.cri->calls_.load(), 2);
}

TEST(AsyncEnricher, CacheIsBoundedLeastRecentlyUsedFirst) {
  EnricherConfig config;
  config.cache_size = 3;
  EnricherHarness h(config);
  std::vector<std::string> ids;
  for (char c : std::string("abcd")) {
    ids.push_back(std::string(64, c));
    h.cri->set(ids.back(), {pod_labels(std::string(1, c), "ns"), "img"});
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(ask_until_answered(*h.enricher, cri_ref(ids[i])));
  ASSERT_TRUE(h.enricher->try_enrich(cri_ref(ids[0])));      // a: most recent now; b is the oldest
  ASSERT_TRUE(ask_until_answered(*h.enricher, cri_ref(ids[3])));  // d evicts b
  EXPECT_EQ(h.cri->calls_.load(), 4);
  EXPECT_TRUE(h.enricher->try_enrich(cri_ref(ids[0])));
  EXPECT_TRUE(h.enricher->try_enrich(cri_ref(ids[2])));
  EXPECT_TRUE(h.enricher->try_enrich(cri_ref(ids[3])));
  EXPECT_FALSE(h.enricher->try_enrich(cri_ref(ids[1]))) << "b was evicted: asked again";
}

TEST(AsyncEnricher, ASlowRuntimeNeverBlocksTheCallerAndTheQueueIsBounded) {
  EnricherConfig config;
  config.queue_size = 4;
  config.lookup_timeout = 300ms;
  EnricherHarness h(config);
  h.cri->set_delay(10s);  // answers only after the timeout: every lookup times out
  auto started = std::chrono::steady_clock::now();
  int waiting = 0, refused = 0;
  for (int i = 0; i < 20; ++i) {
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016x", i);
    auto answer = h.enricher->try_enrich(cri_ref(std::string(48, 'e') + hex));
    if (!answer) {
      ++waiting;
    } else {
      ++refused;
      EXPECT_NE(answer->failure.find("too many lookups waiting"), std::string::npos);
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 100ms) << "try_enrich blocked";
  // One may already be taken by the worker, so 4 or 5 wait; the rest are refused at once.
  EXPECT_GE(waiting, 4);
  EXPECT_LE(waiting, 5);
  EXPECT_EQ(waiting + refused, 20);
  EXPECT_EQ(h.metric("cryptnono_exporter_container_lookup_failures_total", {{"reason", "queue_full"}}), refused);
}

TEST(AsyncEnricher, DockerInDockerTakesThePodFromTheCriAndTheRestFromDocker) {
  EnricherHarness h;
  // The build's image sets io.kubernetes.* LABELs of its own: they must not name the pod.
  h.docker->set(kId, {{{"repo2docker.repo", "https://github.com/x/y"},
                       {"io.kubernetes.pod.namespace", "kube-system"},
                       {"io.kubernetes.pod.name", "forged"}},
                      "r2d-build:abc"});
  h.cri->set(kOuterId, {pod_labels("binderhub-dind-x7k2p", "binder"), "docker:24-dind"});
  auto ref = parse_cgroup("kubepods/burstable/pod" + kUid + "/" + kOuterId + "/docker/" + kId);
  ASSERT_EQ(ref.container_type, "docker");
  ASSERT_EQ(ref.outer_container_id, kOuterId);
  auto e = ask_until_answered(*h.enricher, ref);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->failure, "");
  EXPECT_EQ(e->image, "r2d-build:abc");
  EXPECT_EQ(e->labels.at("repo2docker.repo"), "https://github.com/x/y");
  EXPECT_EQ(e->labels.at("io.kubernetes.pod.namespace"), "binder");
  EXPECT_EQ(e->labels.at("io.kubernetes.pod.name"), "binderhub-dind-x7k2p");
  EXPECT_EQ(h.docker->calls_.load(), 1);
  EXPECT_EQ(h.cri->calls_.load(), 1);

  // The outer lookup failing still gives the inner answer, and says what failed.
  const std::string other = std::string(63, 'c') + "1";
  h.docker->set(other, {{{"a", "b"}}, "img"});
  auto ref2 = parse_cgroup("kubepods/burstable/pod" + kUid + "/" + std::string(64, '7') + "/docker/" + other);
  auto e2 = ask_until_answered(*h.enricher, ref2);
  ASSERT_TRUE(e2);
  EXPECT_EQ(e2->labels.at("a"), "b");
  EXPECT_NE(e2->failure.find("pod container 777777777777"), std::string::npos) << e2->failure;
}

TEST(AsyncEnricher, DockerInDockerWithoutCriStillDropsForgedPodLabels) {
  auto metrics = std::make_shared<EnrichMetrics>("cryptnono", false);
  auto docker = std::make_unique<ScriptedRuntime>("docker");
  docker->set(kId, {{{"io.kubernetes.pod.namespace", "kube-system"}, {"build", "1"}}, "img"});
  AsyncEnricher only_docker(nullptr, std::move(docker), {}, metrics, nullptr);
  auto e = ask_until_answered(only_docker, parse_cgroup("kubepods/burstable/pod" + kUid + "/" + kOuterId + "/docker/" + kId));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->labels, (std::map<std::string, std::string>{{"build", "1"}}));
  EXPECT_EQ(e->failure, "");
}

TEST(AsyncEnricher, NothingToAskMeansAnEmptyAnswerNotAFailure) {
  auto metrics = std::make_shared<EnrichMetrics>("cryptnono", false);
  auto cri = std::make_unique<ScriptedRuntime>("cri");
  auto* cri_raw = cri.get();
  AsyncEnricher only_cri(std::move(cri), nullptr, {}, metrics, nullptr);
  for (const std::string& cgroup : {std::string("/user.slice/session-1.scope"),
                                   "/machine.slice/libpod-" + kId + ".scope",  // podman: no client
                                   "/system.slice/docker-" + kId + ".scope"}) {  // docker disabled
    auto e = only_cri.try_enrich(parse_cgroup(cgroup));
    ASSERT_TRUE(e) << cgroup;
    EXPECT_EQ(e->failure, "") << cgroup;
    EXPECT_TRUE(e->labels.empty()) << cgroup;
  }
  EXPECT_EQ(cri_raw->calls_.load(), 0);
}

TEST(EnrichMetrics, NamespaceSeriesOnlyWhenAskedAndBounded) {
  EnrichMetrics off("cryptnono", false);
  off.on_written("execwhacker", "execwhacker.bpf", "killed", "hub-a");
  EXPECT_FALSE(metric_value(off.serialize(), "cryptnono_execwhacker_processes_killed_by_namespace_total"));

  EnrichMetrics on("cryptnono", true);
  for (int i = 0; i < 400; ++i) on.on_written("execwhacker", "execwhacker.bpf", "killed", "user-" + std::to_string(i));
  on.on_written("execwhacker", "execwhacker.bpf", "spared", "user-1");  // not a kill: not counted
  on.on_written("execwhacker", "execwhacker.scan", "missed-kill", "hub-a");
  auto text = on.serialize();
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_killed_by_namespace_total"), 400.0);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_killed_by_namespace_total", {{"namespace", "user-7"}}),
            1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_killed_by_namespace_total",
                         {{"namespace", "_overflow"}}),
            400.0 - kMaxSeries);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_missed_by_namespace_total",
                         {{"namespace", "hub-a"}, {"source", "execwhacker.scan"}}),
            1.0);
  size_t series = 0;
  for (size_t pos = text.find("processes_killed_by_namespace_total{"); pos != std::string::npos;
       pos = text.find("processes_killed_by_namespace_total{", pos + 1)) {
    ++series;
  }
  EXPECT_EQ(series, kMaxSeries + 1);
}

TEST(ApplyEnrichment, FillsLabelsImageAndAppendsTheFailureToTheReason) {
  Json line = {{"labels", Json::object()}, {"image", ""}, {"reason", "process exited"}};
  apply_enrichment(line, {pod_labels("p", "n"), "img:1", ""});
  EXPECT_EQ(line["labels"]["io.kubernetes.pod.name"], "p");
  EXPECT_EQ(line["image"], "img:1");
  EXPECT_EQ(line["reason"], "process exited");
  apply_enrichment(line, {{}, "", "cri ContainerStatus: connection refused"});
  EXPECT_EQ(line["reason"], "process exited; container-lookup-failed: cri ContainerStatus: connection refused");
  Json empty_reason = {{"labels", Json::object()}, {"image", ""}, {"reason", ""}};
  apply_enrichment(empty_reason, {{}, "", "timeout"});
  EXPECT_EQ(empty_reason["reason"], "container-lookup-failed: timeout");
}

// ---- the CRI client against a fake runtime.v1 server ------------------------------

class FakeCri final : public runtime::v1::RuntimeService::Service, public runtime::v1::ImageService::Service {
 public:
  grpc::Status ContainerStatus(grpc::ServerContext*, const runtime::v1::ContainerStatusRequest* req,
                               runtime::v1::ContainerStatusResponse* resp) override {
    status_calls++;
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    if (req->container_id() != kId) return {grpc::StatusCode::NOT_FOUND, "container \"" + req->container_id() + "\" not found"};
    auto* st = resp->mutable_status();
    st->set_id(kId);
    st->mutable_metadata()->set_name("notebook");
    st->mutable_image()->set_image(image);
    st->set_image_ref(image_ref);
    for (const auto& [k, v] : labels) (*st->mutable_labels())[k] = v;
    return grpc::Status::OK;
  }
  grpc::Status ListContainers(grpc::ServerContext*, const runtime::v1::ListContainersRequest* req,
                              runtime::v1::ListContainersResponse* resp) override {
    if (req->filter().id() == kId) {
      auto* c = resp->add_containers();
      c->set_id(kId);
      c->set_pod_sandbox_id("sandbox-1");
    }
    return grpc::Status::OK;
  }
  grpc::Status PodSandboxStatus(grpc::ServerContext*, const runtime::v1::PodSandboxStatusRequest* req,
                                runtime::v1::PodSandboxStatusResponse* resp) override {
    if (req->pod_sandbox_id() != "sandbox-1") return {grpc::StatusCode::NOT_FOUND, "no sandbox"};
    auto* md = resp->mutable_status()->mutable_metadata();
    md->set_name("from-sandbox");
    md->set_namespace_("sandbox-ns");
    md->set_uid(kUid);
    return grpc::Status::OK;
  }
  grpc::Status ImageStatus(grpc::ServerContext*, const runtime::v1::ImageStatusRequest* req,
                           runtime::v1::ImageStatusResponse* resp) override {
    image_calls++;
    if (req->image().image() == image_ref || req->image().image() == image) {
      resp->mutable_image()->set_id(image_ref);
      for (const auto& t : tags) resp->mutable_image()->add_repo_tags(t);
    }
    return grpc::Status::OK;
  }

  std::string image = "quay.io/org/notebook:v1";
  std::string image_ref = "sha256:" + std::string(64, 'b');
  std::vector<std::string> tags;
  std::map<std::string, std::string> labels = pod_labels("jupyter-bob", "hub-b");
  std::chrono::milliseconds delay{0};
  std::atomic<int> status_calls{0}, image_calls{0};
};

class CriClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.path + "/cri.sock";
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
    builder.RegisterService(static_cast<runtime::v1::RuntimeService::Service*>(&fake_));
    builder.RegisterService(static_cast<runtime::v1::ImageService::Service*>(&fake_));
    server_ = builder.BuildAndStart();
    ASSERT_TRUE(server_);
    client_ = make_cri_client(socket_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }
  TempDir dir_{"cri-fake"};
  std::string socket_;
  FakeCri fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RuntimeClient> client_;
};

TEST_F(CriClientTest, ReadsLabelsAndImageFromContainerStatus) {
  auto info = client_->inspect(kId, 1s);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->labels, pod_labels("jupyter-bob", "hub-b"));
  EXPECT_EQ(info->image, "quay.io/org/notebook:v1");
  EXPECT_EQ(fake_.image_calls.load(), 0) << "a named image needs no image lookup";
}

TEST_F(CriClientTest, AnImageIdIsResolvedToItsTagThroughTheImageService) {
  fake_.image = fake_.image_ref;  // what CRI-O reports
  fake_.tags = {"quay.io/org/notebook:v2"};
  auto info = client_->inspect(kId, 1s);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->image, "quay.io/org/notebook:v2");
  fake_.tags.clear();  // untagged: the digest is all there is
  auto untagged = client_->inspect(kId, 1s);
  ASSERT_TRUE(untagged);
  EXPECT_EQ(untagged->image, fake_.image_ref);
}

TEST_F(CriClientTest, WithoutKubeletLabelsThePodComesFromTheSandbox) {
  fake_.labels.clear();
  auto info = client_->inspect(kId, 1s);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->labels.at("io.kubernetes.container.name"), "notebook");  // from metadata
  EXPECT_EQ(info->labels.at("io.kubernetes.pod.name"), "from-sandbox");
  EXPECT_EQ(info->labels.at("io.kubernetes.pod.namespace"), "sandbox-ns");
  EXPECT_EQ(info->labels.at("io.kubernetes.pod.uid"), kUid);
}

TEST_F(CriClientTest, NotFoundTimeoutAndNoRuntimeAreTypedErrors) {
  auto missing = client_->inspect(std::string(64, 'f'), 1s);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, "not_found");
  EXPECT_NE(missing.error().message.find("not found"), std::string::npos);

  fake_.delay = 500ms;
  auto started = std::chrono::steady_clock::now();
  auto slow = client_->inspect(kId, 100ms);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().kind, "timeout");
  EXPECT_LT(took, 400ms) << "the deadline was not applied";
  fake_.delay = 0ms;

  auto nobody = make_cri_client(dir_.path + "/nobody.sock")->inspect(kId, 1s);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().kind, "unavailable");
}

TEST_F(CriClientTest, HostileLabelsAreBounded) {
  fake_.labels.clear();
  for (int i = 0; i < 500; ++i) fake_.labels["k" + std::to_string(i)] = std::string(5000, 'v');
  auto info = client_->inspect(kId, 2s);
  ASSERT_TRUE(info);
  EXPECT_LE(info->labels.size(), kMaxLabels);
  for (const auto& [k, v] : info->labels) EXPECT_LE(v.size(), kMaxLabelValueBytes);
}

// ---- the Docker client against a fake dockerd HTTP server ----------------------------

// Serves one canned HTTP answer per request path on a unix socket; records the requests.
class FakeDockerd {
 public:
  explicit FakeDockerd(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0) {
      ADD_FAILURE() << "cannot listen on " << path_;
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDockerd() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  void answer(const std::string& path, std::string raw_response) {
    std::lock_guard lock(mutex_);
    answers_[path] = std::move(raw_response);
  }
  std::vector<std::string> requests() {
    std::lock_guard lock(mutex_);
    return requests_;
  }
  std::chrono::milliseconds delay{0};

  static std::string ok(const std::string& body) {
    return "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }
  static std::string chunked(const std::string& body) {
    std::string out = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t i = 0; i < body.size(); i += 7) {
      auto piece = body.substr(i, 7);
      char size[16];
      std::snprintf(size, sizeof size, "%zx", piece.size());
      out += std::string(size) + "\r\n" + piece + "\r\n";
    }
    return out + "0\r\n\r\n";
  }

 private:
  void serve() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      std::string line = req.substr(0, req.find("\r\n"));
      std::string path = line.size() > 4 ? line.substr(4, line.rfind(' ') - 4) : "";
      std::string response;
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(req);
        auto it = answers_.find(path);
        response = it != answers_.end()
                       ? it->second
                       : "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 43\r\n\r\n"
                         "{\"message\":\"No such container: abcdefabcd\"}";
      }
      if (delay.count() > 0) std::this_thread::sleep_for(delay);
      // The client may have given up (timeout tests): no SIGPIPE for the test process.
      (void)!::send(c, response.data(), response.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }
  std::string path_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::map<std::string, std::string> answers_;
  std::vector<std::string> requests_;
};

TEST(DockerClient, ReadsConfigLabelsAndImage) {
  TempDir dir("docker-fake");
  FakeDockerd dockerd(dir.path + "/docker.sock");
  nlohmann::json inspect = {{"Id", kId},
                            {"Image", "sha256:" + std::string(64, 'c')},
                            {"Config", {{"Image", "jupyter/r2d-build:5f2"}, {"Labels", {{"repo2docker.ref", "main"}}}}}};
  dockerd.answer("/containers/" + kId + "/json", FakeDockerd::ok(inspect.dump()));
  auto client = make_docker_client(dir.path + "/docker.sock");
  auto info = client->inspect(kId, 1s);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->image, "jupyter/r2d-build:5f2");
  EXPECT_EQ(info->labels.at("repo2docker.ref"), "main");
  auto reqs = dockerd.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].rfind("GET /containers/" + kId + "/json HTTP/1.1\r\n", 0), 0u);
  EXPECT_NE(reqs[0].find("\r\nHost: "), std::string::npos);
}

TEST(DockerClient, ChunkedAnswersAndImageIdsResolvedByTag) {
  TempDir dir("docker-fake");
  FakeDockerd dockerd(dir.path + "/docker.sock");
  std::string image_id = "sha256:" + std::string(64, 'd');
  nlohmann::json inspect = {{"Id", kId}, {"Image", image_id}, {"Config", {{"Image", image_id}, {"Labels", nullptr}}}};
  dockerd.answer("/containers/" + kId + "/json", FakeDockerd::chunked(inspect.dump()));
  dockerd.answer("/images/" + image_id + "/json",
                 FakeDockerd::chunked(nlohmann::json({{"Id", image_id}, {"RepoTags", {"miner:latest"}}}).dump()));
  auto info = make_docker_client(dir.path + "/docker.sock")->inspect(kId, 1s);
  ASSERT_TRUE(info) << info.error().message;
  EXPECT_EQ(info->image, "miner:latest");
  EXPECT_TRUE(info->labels.empty());
}

TEST(DockerClient, NotFoundTimeoutAndNoDaemonAreTypedErrors) {
  TempDir dir("docker-fake");
  FakeDockerd dockerd(dir.path + "/docker.sock");
  auto client = make_docker_client(dir.path + "/docker.sock");
  auto missing = client->inspect(kId, 1s);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind, "not_found");
  EXPECT_NE(missing.error().message.find("No such container"), std::string::npos) << missing.error().message;

  dockerd.delay = 600ms;
  auto started = std::chrono::steady_clock::now();
  auto slow = client->inspect(kId, 100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 400ms);
  ASSERT_FALSE(slow);
  EXPECT_EQ(slow.error().kind, "timeout");

  auto nobody = make_docker_client(dir.path + "/none.sock")->inspect(kId, 1s);
  ASSERT_FALSE(nobody);
  EXPECT_EQ(nobody.error().kind, "unavailable");
}

TEST(DockerClient, GarbageFromTheSocketIsAnErrorNotACrash) {
  TempDir dir("docker-fake");
  FakeDockerd dockerd(dir.path + "/docker.sock");
  auto client = make_docker_client(dir.path + "/docker.sock");
  for (std::string raw : {std::string("garbage"), std::string("HTTP/1.1 200 OK\r\n\r\n{not json"),
                          std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
                          std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n"),
                          std::string("HTTP/1.1 500 Internal Server Error\r\n\r\n{\"message\":\"boom\"}")}) {
    dockerd.answer("/containers/" + kId + "/json", raw);
    auto r = client->inspect(kId, 1s);
    EXPECT_FALSE(r) << raw;
  }
}

TEST(SocketFlags, AcceptUnixPathsOnly) {
  EXPECT_EQ(unix_socket_path("unix:///run/containerd/containerd.sock").value_or(""), "/run/containerd/containerd.sock");
  EXPECT_EQ(unix_socket_path("/run/crio/crio.sock").value_or(""), "/run/crio/crio.sock");
  EXPECT_FALSE(unix_socket_path("tcp://127.0.0.1:2375"));
  EXPECT_FALSE(unix_socket_path("unix://relative.sock"));
  EXPECT_FALSE(unix_socket_path("/" + std::string(200, 'x')));
}

// ---- the exporter loop with a scripted runtime -------------------------------------

class ExporterEnrichment : public ::testing::Test {
 protected:
  void start(std::chrono::milliseconds runtime_delay, int lookup_wait_ms, bool namespace_label = false) {
    endpoint_ = "ipc://" + dir_.path + "/execwhacker.sock";
    auto pub = Publisher::bind(ctx_, endpoint_, "node-enrich", "enforcer", "execwhacker");
    ASSERT_TRUE(pub) << pub.error().message;
    pub_ = std::move(*pub);
    int fds[2];
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
    out_read_ = fds[0];
    out_write_ = fds[1];
    stop_ = eventfd(0, EFD_CLOEXEC);
    Config config;
    config.connect = {endpoint_};
    config.metrics_address = "127.0.0.1:0";
    config.lookup_wait_ms = lookup_wait_ms;
    config.metrics_namespace_label = namespace_label;
    auto cri = std::make_unique<ScriptedRuntime>("cri");
    cri_ = cri.get();
    cri_->set(kId, {pod_labels("jupyter-carol", "hub-c"), "quay.io/2i2c/image:1"});
    cri_->set_delay(runtime_delay);
    auto metrics = std::make_shared<EnrichMetrics>(config.metrics_prefix, namespace_label);
    EnricherConfig ec;
    ec.lookup_timeout = 5s;
    auto enricher = std::make_unique<AsyncEnricher>(std::move(cri), nullptr, ec, metrics, nullptr);
    auto exporter =
        Exporter::create(config, ctx_, out_write_, std::move(enricher), make_logger("exporter-enrich", "warn"), metrics);
    ASSERT_TRUE(exporter) << exporter.error().message;
    exporter_ = std::move(*exporter);
    loop_ = std::thread([this] { result_ = exporter_->run(stop_); });
    reader_ = LineReader(out_read_);
    // Join: publish host-process kills (no lookup) until one comes out.
    for (int i = 0; i < 500; ++i) {
      publish(999, "/user.slice/session-1.scope", schema::Action::KILLED);
      if (reader_.next(20ms)) break;
    }
    while (reader_.next(100ms)) {
    }
  }
  void TearDown() override {
    if (loop_.joinable()) {
      uint64_t one = 1;
      EXPECT_EQ(write(stop_, &one, sizeof one), 8);
      loop_.join();
      EXPECT_TRUE(result_);
    }
    exporter_.reset();
    for (int fd : {out_read_, out_write_, stop_}) {
      if (fd >= 0) close(fd);
    }
  }
  void publish(uint32_t pid, const std::string& cgroup, schema::Action action, const std::string& reason = "") {
    capnp::MallocMessageBuilder mb;
    auto d = pub_->begin(mb, topic::kDecision).getBody().initDecision();
    d.setDetector("execwhacker");
    d.setAction(action);
    d.setSource("execwhacker.bpf");
    d.setReason(reason);
    d.setMatched("enrichtest");
    auto ev = d.initEvent();
    ev.setPid(pid);
    ev.setCgroupName(cgroup);
    ASSERT_TRUE(pub_->send(topic::kDecision, mb));
  }
  nlohmann::json next_line(std::chrono::milliseconds timeout = 10s) {
    auto line = reader_.next(timeout);
    if (!line) return nullptr;
    return nlohmann::json::parse(*line);
  }
  std::string metrics() { return http_get(exporter_->metrics_port(), "/metrics").body; }

  TempDir dir_{"exporter-enrich"};
  zmq::context_t ctx_;
  std::string endpoint_;
  std::unique_ptr<Publisher> pub_;
  int out_read_ = -1, out_write_ = -1, stop_ = -1;
  ScriptedRuntime* cri_ = nullptr;
  std::unique_ptr<Exporter> exporter_;
  std::thread loop_;
  Result<void> result_;
  LineReader reader_{-1};
};

const std::string kPodCgroup = "kubepods/besteffort/pod" + kUid + "/" + kId;

TEST_F(ExporterEnrichment, AKillLineWaitsForItsPodAndAHostLineOvertakesIt) {
  start(300ms, 5000, /*namespace_label=*/true);
  publish(101, kPodCgroup, schema::Action::KILLED);
  publish(102, "/system.slice/cron.service", schema::Action::KILLED);
  // The runtime takes 300 ms: the host process's line is written first (order changes).
  auto first = next_line();
  ASSERT_TRUE(first.is_object());
  EXPECT_EQ(first["pid"], 102);
  EXPECT_EQ(first["container_id"], "");
  auto second = next_line();
  ASSERT_TRUE(second.is_object());
  EXPECT_EQ(second["pid"], 101);
  EXPECT_EQ(second["container_type"], "cri");
  EXPECT_EQ(second["container_id"], kId);
  EXPECT_EQ(second["pod_uid"], kUid);
  EXPECT_EQ(second["labels"]["io.kubernetes.pod.name"], "jupyter-carol");
  EXPECT_EQ(second["labels"]["io.kubernetes.pod.namespace"], "hub-c");
  EXPECT_EQ(second["labels"]["io.kubernetes.container.name"], "notebook");
  EXPECT_EQ(second["labels"]["io.kubernetes.pod.uid"], kUid);
  EXPECT_EQ(second["image"], "quay.io/2i2c/image:1");
  EXPECT_EQ(second["reason"], "");
  // The next kill in that container is answered from the cache, at once.
  publish(103, kPodCgroup, schema::Action::MISSED_KILL, "process exited");
  auto third = next_line(150ms);
  ASSERT_TRUE(third.is_object()) << "a cached container must not wait";
  EXPECT_EQ(third["labels"]["io.kubernetes.pod.namespace"], "hub-c");
  EXPECT_EQ(third["reason"], "process exited");
  EXPECT_EQ(cri_->calls_.load(), 1);
  auto text = metrics();
  EXPECT_EQ(metric_value(text, "cryptnono_exporter_container_cache_misses_total"), 1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_exporter_container_cache_hits_total"), 1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_killed_by_namespace_total",
                         {{"namespace", "hub-c"}, {"source", "execwhacker.bpf"}}),
            1.0);
  EXPECT_EQ(metric_value(text, "cryptnono_execwhacker_processes_missed_by_namespace_total", {{"namespace", "hub-c"}}),
            1.0);
  // cryptnono's own counters are untouched by the lookup (counted when the decision came).
  EXPECT_GE(metric_value(text, "cryptnono_execwhacker_processes_killed_total", {{"source", "execwhacker.bpf"}}).value_or(0),
            2.0);
}

TEST_F(ExporterEnrichment, ARuntimeThatDoesNotAnswerInTimeStillGetsTheLineWritten) {
  start(3s, 300);
  auto sent = std::chrono::steady_clock::now();
  publish(201, kPodCgroup, schema::Action::KILLED, "");
  auto line = next_line();
  auto waited = std::chrono::steady_clock::now() - sent;
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["pid"], 201);
  EXPECT_EQ(line["container_id"], kId);
  EXPECT_EQ(line["labels"], nlohmann::json::object());
  EXPECT_EQ(line["reason"], "container-lookup-failed: no answer from the runtime within 300 ms");
  EXPECT_GE(waited, 250ms);
  EXPECT_LT(waited, 2s);
  EXPECT_EQ(metric_value(metrics(), "cryptnono_exporter_container_lookup_pending_timeouts_total"), 1.0);
  // No namespace series without --metrics-namespace-label.
  EXPECT_FALSE(metric_value(metrics(), "cryptnono_execwhacker_processes_killed_by_namespace_total").has_value());
}

TEST_F(ExporterEnrichment, AFailedLookupIsLoggedWithItsReason) {
  start(0ms, 5000);
  const std::string unknown = std::string(64, 'a');
  publish(301, "kubepods/besteffort/pod" + kUid + "/" + unknown, schema::Action::KILLED);
  auto line = next_line();
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["container_id"], unknown);
  EXPECT_EQ(line["reason"], "container-lookup-failed: cri: no such container " + unknown);
  EXPECT_EQ(metric_value(metrics(), "cryptnono_exporter_container_lookup_failures_total",
                         {{"runtime", "cri"}, {"reason", "not_found"}}),
            1.0);
}

TEST_F(ExporterEnrichment, StoppingWritesTheLinesStillWaiting) {
  start(3s, 30000);
  publish(401, kPodCgroup, schema::Action::KILLED);
  std::this_thread::sleep_for(200ms);  // received, waiting for the 3 s runtime
  uint64_t one = 1;
  ASSERT_EQ(write(stop_, &one, sizeof one), 8);
  loop_.join();
  EXPECT_TRUE(result_);
  auto line = next_line(2s);
  ASSERT_TRUE(line.is_object());
  EXPECT_EQ(line["pid"], 401);
  EXPECT_EQ(line["reason"], "container-lookup-failed: exporter stopping before the runtime answered");
}

}  // namespace
}  // namespace cryptnono::exporter
