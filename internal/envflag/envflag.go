// Package envflag lets every command-line flag take its default from the
// environment: flag --opensearch-url reads PODLOGS_OPENSEARCH_URL. The command
// line wins over the environment, which wins over the built-in default.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// Prefix is put before every environment variable name.
const Prefix = "PODLOGS_"

// EnvName returns the environment variable consulted for a flag.
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return Prefix + strings.ToUpper(r.Replace(flagName))
}

// Parse parses args into fs after setting every flag that was not given on
// the command line from its environment variable, if set.
func Parse(fs *flag.FlagSet, args []string, lookupEnv func(string) (string, bool)) error {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		name := EnvName(f.Name)
		if v, ok := lookupEnv(name); ok {
			if setErr := fs.Set(f.Name, v); setErr != nil {
				err = fmt.Errorf("environment variable %s=%q: %w", name, v, setErr)
			}
		}
	})
	return err
}

// Usage appends the environment variable name to each flag's usage text, so
// --help shows both ways to set it.
func Usage(fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		f.Usage = fmt.Sprintf("%s (env %s)", f.Usage, EnvName(f.Name))
	})
}
