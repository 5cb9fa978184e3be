// A real dsinfer-server child process for integration tests: started on a free loopback port
// (--listen 127.0.0.1:0, the bound port read back from --port-file, so there is no race for a
// port), stopped with a signal, its exit status reported.
#ifndef DSINFER_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define DSINFER_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "dsinfer/v1/inference.grpc.pb.h"

extern char** environ;

namespace dsinfer::testing {

class ServerProcess {
 public:
  // Starts DSINFER_BIN_DIR/dsinfer-server with `args` (plus --listen/--port-file) and waits
  // until it serves. Returns false (and a reason in `error`) if it does not within 60 s.
  bool Start(const std::vector<std::string>& args, const std::string& port_file, std::string* error) {
    std::remove(port_file.c_str());
    std::vector<std::string> argv = {std::string(DSINFER_BIN_DIR) + "/dsinfer-server", "--listen",
                                     "127.0.0.1:0", "--port-file", port_file};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (std::string& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    if (posix_spawn(&pid_, raw[0], nullptr, nullptr, raw.data(), environ) != 0) {
      *error = "posix_spawn failed";
      return false;
    }
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < give_up) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        *error = "the server exited during startup";
        return false;
      }
      std::ifstream in(port_file);
      if (in >> port_) {
        channel_ = grpc::CreateChannel(address(), grpc::InsecureChannelCredentials());
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    *error = "the server did not write its port within 60 s";
    return false;
  }

  // Sends `signal` and waits for the exit; returns the exit code (-1 when killed by a signal
  // or not running).
  int Stop(int signal = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    return Wait();
  }
  int Wait() {
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  std::unique_ptr<v1::Inference::Stub> NewStub() const { return v1::Inference::NewStub(channel_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace dsinfer::testing

#endif  // DSINFER_TESTS_INTEGRATION_SERVER_PROCESS_H_
