#include "engine/tools/cli_flags.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"

namespace dsinfer {

std::vector<std::string> ParseFlagsWithEnvironment(int argc, char** argv, const char* usage) {
  absl::SetProgramUsageMessage(usage);
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    // Only the project's own flags (absl's built-ins live in absl/ sources).
    if (absl::StrContains(flag->Filename(), "absl/")) continue;
    std::string env = "DSINFER_";
    for (char c : name) env.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      std::fprintf(stderr, "error: environment %s=%s: %s\n", env.c_str(), value, error.c_str());
      std::exit(2);
    }
  }
  std::vector<std::string> normalized(argv, argv + argc);
  for (size_t i = 1; i < normalized.size(); ++i) {
    std::string& arg = normalized[i];
    if (arg == "--") break;
    if (arg.size() > 2 && arg[0] == '-' && arg[1] == '-') {
      const size_t end = std::min(arg.find('='), arg.size());
      for (size_t j = 2; j < end; ++j) {
        if (arg[j] == '-') arg[j] = '_';
      }
    }
  }
  std::vector<char*> args;
  for (std::string& s : normalized) args.push_back(s.data());
  std::vector<char*> positional = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

}  // namespace dsinfer
