// Command crd-apiserver serves k8s.io/apiextensions-apiserver on its own, as wasmkube's tests
// use it: a current CRD API server backed by etcd that kubectl can talk to.
//
// Upstream's standalone command leaves two things off that kubectl needs, and this one turns
// them back on, as upstream's integration test server does: the /apis discovery listing
// (aggregated discovery carries the custom resources' groups) and the OpenAPI documents
// (v2 and v3) into which the served CRDs' schemas are published. All flags are upstream's
// (etcd, serving, delegated authentication and authorization, admission, feature gates).
//
// Built by scripts/cluster/build-crd-apiserver.sh in GOPATH mode from Debian's Go packages.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	extensionsapiserver "k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/component-base/cli"
)

func main() {
	os.Exit(cli.Run(command(genericapiserver.SetupSignalContext())))
}

// command is the cobra command: upstream's options, our run.
func command(ctx context.Context) *cobra.Command {
	opts := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	cmd := &cobra.Command{
		Use:   "crd-apiserver",
		Short: "A standalone CRD API server with discovery and OpenAPI publishing on",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return opts.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := opts.Complete(); err != nil {
				return err
			}
			if err := opts.Validate(); err != nil {
				return err
			}
			return serve(c.Context(), opts)
		},
	}
	cmd.SetContext(ctx)
	opts.AddFlags(cmd.Flags())
	return cmd
}

// serve builds the server from the options, re-enables what kubectl needs and runs until ctx ends.
func serve(ctx context.Context, opts *options.CustomResourceDefinitionsServerOptions) error {
	config, err := opts.Config()
	if err != nil {
		return fmt.Errorf("configuring the server: %w", err)
	}
	// OpenAPI v2 (v3 is configured by upstream's options): without a static spec the CRD
	// OpenAPI controllers never start and no custom resource schema is published.
	definitions := openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions)
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		definitions, openapinamer.NewDefinitionNamer(extensionsapiserver.Scheme, scheme.Scheme))

	completed := config.Complete()
	// Complete() turns the /apis listing off (in kube-apiserver the aggregator serves it);
	// standalone, kubectl finds the custom resources only through it.
	completed.GenericConfig.EnableDiscovery = true

	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("creating the server: %w", err)
	}
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}
