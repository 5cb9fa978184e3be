// Flag parsing shared by every dsinfer binary: absl flags, spelled with dashes or
// underscores (`--max-new-tokens` = `--max_new_tokens`), each mirrored by an environment
// variable DSINFER_<NAME> (upper case, underscores) that sets its default. The command line
// wins over the environment. Only main() calls this; library code never reads the
// environment.
#ifndef DSINFER_ENGINE_TOOLS_CLI_FLAGS_H_
#define DSINFER_ENGINE_TOOLS_CLI_FLAGS_H_

#include <string>
#include <vector>

namespace dsinfer {

// Applies DSINFER_* environment variables to the flags this binary defines, then parses
// argv (exits with a message on a bad flag). Returns the positional arguments (argv[0]
// first).
std::vector<std::string> ParseFlagsWithEnvironment(int argc, char** argv, const char* usage);

}  // namespace dsinfer

#endif  // DSINFER_ENGINE_TOOLS_CLI_FLAGS_H_
