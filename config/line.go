package config

// Line returns the line of the config file that set key (a path such as
// "mappings[2].events[0].when"), or that of its nearest enclosing key; 0 when
// the key came from the environment or no file was read.
func (c *Config) Line(key string) int {
	if c == nil || c.pos == nil {
		return 0
	}
	if _, ok := c.pos.env[key]; ok {
		return 0
	}
	for k := key; k != ""; k = parentKey(k) {
		if line, ok := c.pos.lines[k]; ok {
			return line
		}
	}
	return 0
}
