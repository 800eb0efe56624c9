module wasmkube.dev/examples/wordcount-go

go 1.24
