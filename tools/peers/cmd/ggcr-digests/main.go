// Command ggcr-digests is the strongest peer of `make bench`: what a competent user writes instead
// of shell pipelines. One process with go-containerregistry's remote.Puller (one connection
// pool, one token per scope) lists a repository's tags, then HEADs every tag with a fixed number
// of workers, printing "tag digest" lines.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func main() {
	insecure := flag.Bool("insecure", false, "plain HTTP registry")
	concurrency := flag.Int("concurrency", 8, "HEAD requests in flight")
	flag.Parse()
	if flag.NArg() != 1 || *concurrency < 1 {
		fmt.Fprintln(os.Stderr, "usage: ggcr-digests [-insecure] [-concurrency N] host/repository")
		os.Exit(2)
	}
	var opts []name.Option
	if *insecure {
		opts = append(opts, name.Insecure)
	}
	repo, err := name.NewRepository(flag.Arg(0), opts...)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	puller, err := remote.NewPuller(remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		fail(err)
	}
	tags, err := puller.List(ctx, repo)
	if err != nil {
		fail(err)
	}
	work := make(chan string)
	var out sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tag := range work {
				desc, err := puller.Head(ctx, repo.Tag(tag))
				out.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", tag, err)
					}
				} else {
					fmt.Printf("%s %s\n", tag, desc.Digest)
				}
				out.Unlock()
			}
		}()
	}
	for _, t := range tags {
		work <- t
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		fail(firstErr)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ggcr-digests:", err)
	os.Exit(1)
}
