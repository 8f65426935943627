package rules

// Option changes how documents are parsed.
type Option func(*options)

type options struct {
	registry *Registry
}

func newOptions(opts []Option) options {
	o := options{registry: Builtin()}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithRegistry resolves placement strategies in r instead of the built-ins.
func WithRegistry(r *Registry) Option {
	return func(o *options) { o.registry = r }
}
