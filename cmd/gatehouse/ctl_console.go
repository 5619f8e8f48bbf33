package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/gatehouse/gatehouse/cloud/auth"
	"github.com/gatehouse/gatehouse/proto/gen/gatehouse/console/v1/consolev1connect"
)

// consoleClient returns a ConsoleService client of the hub at hubURL that
// sends key as its bearer token ("": none).
func consoleClient(hubURL, key string) consolev1connect.ConsoleServiceClient {
	var opts []connect.ClientOption
	if key != "" {
		opts = append(opts, connect.WithInterceptors(auth.Bearer(key)))
	}
	return consolev1connect.NewConsoleServiceClient(http.DefaultClient, strings.TrimRight(hubURL, "/"), opts...)
}

// printConsoleJSON prints a console answer as protobuf JSON, indented,
// every field present.
func printConsoleJSON(w io.Writer, msg proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(msg)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
